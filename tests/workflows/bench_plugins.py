"""Attacks of a user's own, registered by a plugin module (`nnmark bench --plugin MODULE`), that
let the bench's tests watch and break it: one logs every trial it runs, one kills the worker that
runs it the first time, one always raises. Never imported by nnmark itself."""
from __future__ import annotations

import json
import os
from pathlib import Path

from nnmark.attacks.base import AttackContext, register_attack
from nnmark.attacks.finetune import FTAL
from nnmark.data.streaming import train_size

TRIAL_LOG = "NNMARK_TEST_TRIAL_LOG"  # a file each trial of logged-ftal appends its settings to
DIE_MARKER = "NNMARK_TEST_DIE_MARKER"  # dies-once kills its process unless this file exists (then makes it)
NAMES = ("logged-ftal", "dies-once", "always-raises")


@register_attack("logged-ftal")
class LoggedFineTune(FTAL):
    summary = "ftal that logs each run's settings (a test's witness of which trials ran)"
    standard = False

    def apply(self, model, strength: float, context: AttackContext):
        with open(os.environ[TRIAL_LOG], "a") as log:
            log.write(json.dumps({**context.settings, "samples": train_size(context.data)}, sort_keys=True) + "\n")
        return super().apply(model, strength, context)


@register_attack("dies-once")
class DiesOnce(FTAL):
    summary = "ftal whose first run kills its worker process mid-trial"
    standard = False

    def apply(self, model, strength: float, context: AttackContext):
        marker = Path(os.environ[DIE_MARKER])
        if not marker.exists():
            marker.write_text("died once\n")
            os._exit(1)  # what a machine lost mid-trial looks like to the engine
        return super().apply(model, strength, context)


@register_attack("always-raises")
class AlwaysRaises(FTAL):
    summary = "an attack with a bug"
    standard = False

    def apply(self, model, strength: float, context: AttackContext):
        raise RuntimeError("a bug in the user's attack")


def unregister() -> None:
    """Take the plugin's attacks out of the registry again (a test's clean-up)."""
    import sys

    from nnmark.attacks.base import ATTACKS

    for name in NAMES:
        ATTACKS._entries.pop(name, None)
    sys.modules.pop(__name__, None)
