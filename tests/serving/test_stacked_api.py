"""Two API marks served together: dark-knowledge (caught distillers of the probabilities) and DAWN
(caught fitters of the labels). The stacked API answers as each mark would alone, and a thief of
either kind is caught by the mark made for it."""
import statistics
from unittest import mock

import pytest
import torch

from nnmark.api import generate_key, verify_model
from nnmark.attacks import AttackContext, get_attack
from nnmark.errors import NNMarkError
from nnmark.schemes import WatermarkKey
from nnmark.schemes.base import stacked_api
from nnmark.schemes.dark_knowledge import DarkKnowledgeAPI
from nnmark.schemes.dawn import DawnAPI, derive_key, keyed_marks

pytestmark = pytest.mark.slow  # the owner is the shared trained digits model


@pytest.fixture(scope="module")
def keys(digits, digits_host):
    with mock.patch("nnmark.schemes.dark_knowledge.secrets.randbits", return_value=3):
        dark = generate_key("dark-knowledge", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                            classifier=digits_host.model, options={"cells": "class"})
    dawn = WatermarkKey("dawn", 10, digits.input_shape, {"secret": torch.arange(32, dtype=torch.uint8) * 5},
                        {"rate": 0.05, "kind": "serving"})
    return dark, dawn


def test_label_marks_go_outside_whatever_the_order_given(digits, digits_host, keys):
    dark, dawn = keys
    for order in (keys, (dawn, dark)):
        api = stacked_api(digits_host.model, list(order))
        assert isinstance(api, DawnAPI) and isinstance(api.model, DarkKnowledgeAPI)
    images = digits.test_x
    with torch.no_grad():
        stacked, dark_alone, dawn_alone = api(images), DarkKnowledgeAPI(digits_host.model, dark)(images), \
            DawnAPI(digits_host.model, dawn, keep_log=False)(images)
    marked, _ = keyed_marks(api.secret, images, api.rate, 10)
    assert 0 < int(marked.sum()) < len(images)
    # each answer's class is DAWN's alone; unmarked answers carry dark-knowledge's probabilities exactly
    assert torch.equal(stacked.argmax(1), dawn_alone.argmax(1))
    assert torch.allclose(stacked[~marked], dark_alone[~marked])
    assert torch.allclose(stacked.exp().sum(1), torch.ones(len(images)), atol=1e-4)


def test_what_cannot_be_stacked_is_refused(digits, digits_host, keys):
    dark, dawn = keys
    with pytest.raises(NNMarkError, match="two 'dawn' keys"):
        stacked_api(digits_host.model, [dawn, dawn])
    trojan = generate_key("trojan", num_classes=10, input_shape=digits.input_shape, dataset=digits, seed=1)
    with pytest.raises(NNMarkError, match="mark is in the model"):
        stacked_api(digits_host.model, [dark, trojan])
    with pytest.raises(NNMarkError, match="no API key"):
        stacked_api(digits_host.model, [])


def test_each_thief_is_caught_by_the_mark_made_for_it(digits, digits_host):
    """Two thieves of 30% of the training images, 30 epochs each, per stacked API: one distils the
    probabilities, one fits the labels (the thief dark-knowledge alone lets go).

    DAWN catches the label-only thief at a rate, not always: 72 of 80 over 20 keys x 2 thieves on
    two CPUs' kernels (95% CI 81-96%; docs/schemes/dark-knowledge.md, "Served with DAWN"), since
    a thief that generalises past the few wrong answers it got repeats too few of them. So the
    claim is tested as a rate over 6 keys: at the interval's low end, 3 or more of 6 are caught
    with probability 0.986. Dark-knowledge caught the distiller 80 of 80 (95-100%) and the
    label-only thief 0 of 80."""
    thieves = {"probabilities": {"schedule": "constant"}, "labels": {"answers": "labels", "schedule": "constant"}}
    owned = {name: {"dark-knowledge": 0, "dawn": 0} for name in thieves}
    accuracies, served = [], []
    for index in range(6):
        with mock.patch("nnmark.schemes.dark_knowledge.secrets.randbits", return_value=3 + index):
            dark = generate_key("dark-knowledge", num_classes=10, input_shape=digits.input_shape, dataset=digits,
                                classifier=digits_host.model, options={"cells": "class"})
        secret = (torch.arange(32, dtype=torch.uint8) * (5 + 2 * index) + index).to(torch.uint8)
        dawn = WatermarkKey("dawn", 10, digits.input_shape, {"secret": secret}, {"rate": 0.05, "kind": "serving"})
        api = stacked_api(digits_host.model, [dark, dawn])
        with torch.no_grad():
            served.append(float((api(digits.test_x).argmax(1) == digits.test_y).float().mean()))
        for name, settings in thieves.items():
            api.log.clear()
            api.keep_log = True
            context = AttackContext(digits.subset(0.3, seed=index), digits_host.spec, seed=index, settings=settings)
            student = get_attack("distill").apply(api, 30, context)
            api.keep_log = False
            with torch.no_grad():
                accuracies.append(float((student(digits.test_x).argmax(1) == digits.test_y).float().mean()))
            dawn_key = derive_key(dawn, digits_host.model, api.queries())  # derived with the bare model
            owned[name]["dark-knowledge"] += verify_model(student, dark).owned
            owned[name]["dawn"] += verify_model(student, dawn_key).owned
    # the thieves keep what the API answers (measured: a median within 3 points, none below 74%)
    assert statistics.median(accuracies) > statistics.median(served) - 0.05 and min(accuracies) > 0.7, accuracies
    assert owned["probabilities"]["dark-knowledge"] >= 5, owned
    assert owned["labels"]["dawn"] >= 3, owned
    assert owned["labels"]["dark-knowledge"] == 0, owned  # why the second mark is there


def test_the_server_stacks_the_marks_it_is_given(tmp_path, digits, digits_host, keys):
    """`nnmark serve --api-mark DARK --api-mark DAWN --query-log` on loopback answers exactly as
    the library's stacked API does."""
    from nnmark.models import save_model
    from nnmark.schemes import save_key
    from nnmark.verification.http import HttpSuspect
    from tests.serving.servers import start_cli_server, stop

    dark, dawn = keys
    save_model(digits_host.model, digits_host.spec, tmp_path / "owner")
    save_key(dark, tmp_path / "dark")
    save_key(dawn, tmp_path / "dawn")
    process, port = start_cli_server(str(tmp_path / "owner"), "--api-mark", str(tmp_path / "dawn"),
                                     "--api-mark", str(tmp_path / "dark"), "--query-log", str(tmp_path / "log"))
    try:
        served = HttpSuspect(f"http://127.0.0.1:{port}", "owner").scores(digits.test_x[:200])
    finally:
        stop(process)
    with torch.no_grad():
        local = stacked_api(digits_host.model, [dark, dawn])(digits.test_x[:200])
    assert torch.allclose(torch.log_softmax(served, 1), torch.log_softmax(local, 1), atol=1e-4)
    assert any((tmp_path / "log").iterdir())
