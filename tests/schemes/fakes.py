"""Stand-in suspects for verification tests."""
import torch


class FixedAnswers:
    """A black-box suspect whose answer to each input is looked up, row by row, among the inputs it
    was told about (so any order of queries gets the same answers), else a default class."""

    description = "fixed answers"

    def __init__(self, answers_by_set, default=0, query_budget=None):
        self.default, self.queries, self.query_budget = default, 0, query_budget
        self.table = {}
        for known, answers in answers_by_set:
            for row, answer in zip(known, answers):
                self.table[row.numpy().tobytes()] = int(answer)

    @property
    def module(self):
        return None

    def predict(self, inputs):
        self.queries += len(inputs)
        return torch.tensor([self.table.get(row.numpy().tobytes(), self.default) for row in inputs],
                            dtype=torch.long)


class FixedScores(FixedAnswers):
    """A suspect that also answers scores: each known input's row of scores, looked up the same way."""

    description = "fixed scores"

    def __init__(self, inputs, scores):
        super().__init__([(inputs, scores.argmax(1))])
        self.rows = {row.numpy().tobytes(): answer for row, answer in zip(inputs, scores)}
        self.num_classes = scores.shape[1]

    def scores(self, inputs):
        self.queries += len(inputs)
        return torch.stack([self.rows.get(row.numpy().tobytes(), torch.zeros(self.num_classes)) for row in inputs])


def sign_with_regulariser(model, key, steps: int, strength: float = 1.0, lr: float = 0.1):
    """Write a weight signature into ``model`` by the regulariser alone (no task loss)."""
    from nnmark.schemes.uchida import SignatureRegulariser

    hook = SignatureRegulariser(key, strength=strength)
    hook.setup(model, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        hook.extra_loss(model, None).backward()  # the regulariser reads weights only
        optimizer.step()
    return model
