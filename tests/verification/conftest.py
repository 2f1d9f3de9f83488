import pytest

from nnmark.api import generate_key, train_model
from nnmark.training import TrainConfig

QUICK = TrainConfig(epochs=8, batch_size=64, lr=0.05)


@pytest.fixture(scope="session")
def adi_key(digits):
    return generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=21, options={"size": 40})


@pytest.fixture(scope="session")
def marked(digits, adi_key):
    return train_model(digits, QUICK, key=adi_key, embed_options={"per_batch": 16})


@pytest.fixture(scope="session")
def control(digits):
    return train_model(digits, QUICK)
