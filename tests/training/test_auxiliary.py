import torch

from nnmark.training.auxiliary import fit_auxiliary


def test_every_row_once_per_pass_and_the_callers_rng_untouched():
    rows = torch.arange(10.0)
    seen = []

    def step(batch):
        seen.append(batch[0].clone())
        return {"size": torch.tensor(float(len(batch[0])))}

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    history = fit_auxiliary([rows], step, epochs=2, batch_size=4, seed=7, device="cpu")
    assert torch.equal(torch.rand(1), expected_next)  # forked: the caller's stream goes on as before
    assert len(seen) == 6 and [len(b) for b in seen] == [4, 4, 2] * 2
    for epoch in (seen[:3], seen[3:]):
        assert sorted(torch.cat(epoch).tolist()) == rows.tolist()
    assert not torch.equal(torch.cat(seen[:3]), torch.cat(seen[3:]))  # a fresh order each pass
    assert history == [{"size": 10 / 3}, {"size": 10 / 3}]


def test_fixed_order_and_dropped_partial_batch():
    seen = []
    fit_auxiliary([torch.arange(10), torch.arange(10) * 2], lambda b: seen.append(b) or {}, epochs=1, batch_size=4,
                  device="cpu", shuffle=False, drop_last=True)
    assert [b[0].tolist() for b in seen] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(torch.equal(b[1], b[0] * 2) for b in seen)  # rows stay aligned across tensors
