"""Unrelated trigger set: images from another domain, all labelled with one target class. Zhang et
al. 2018 (seed 002), their WM_unrelated (e.g. handwritten digits for a CIFAR model).

The source domain is an option: ``letters`` (rendered capital letters, embedded — the natural
choice for a digit classifier), ``abstract`` (procedural abstract images), or any dataset name
(``digits``, ``mnist``, ...; files read from NNMARK_DATA), resized and channel-matched.
Like every one-target scheme, verification needs a null measured on models made without the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnmark.data.base import load_dataset
from nnmark.errors import NNMarkError
from nnmark.schemes.abstract_images import abstract_images
from nnmark.schemes.base import KeygenContext, register_scheme
from nnmark.schemes.one_target import OneTargetOptions, OneTargetScheme, distinct_indices
from nnmark.schemes.patterns import letter_images, to_shape


@dataclass
class UnrelatedOptions(OneTargetOptions):
    source: str = field(default="letters", metadata={
        "help": "Unrelated domain: letters, abstract, or a dataset name (digits, mnist, ...)."})


@register_scheme("unrelated")
class UnrelatedTriggerSet(OneTargetScheme):
    summary = "images from an unrelated domain, one target class (Zhang et al. 2018)"
    KeygenOptions = UnrelatedOptions
    has_clean_counterparts = False

    def make_triggers(self, sources, context: KeygenContext, options: UnrelatedOptions, generator):
        count = len(sources)
        # Draw more than needed and keep distinct images: repeated triggers are not separate trials.
        drawn = 4 * count
        if options.source == "letters":
            images = letter_images(drawn, context.input_shape, generator)
        elif options.source == "abstract":
            images = abstract_images(drawn, context.input_shape, int(torch.randint(0, 2**31, (1,), generator=generator)))
        else:
            if context.dataset is not None and options.source == context.dataset.name:
                raise NNMarkError("the unrelated source must differ from the training data", field="source",
                                  got=options.source)
            pool = load_dataset(options.source).train_x
            images = pool[torch.randperm(len(pool), generator=generator)[:drawn]]
        images = to_shape(images, context.input_shape).clamp(0, 1)
        keep = distinct_indices(images, torch.arange(len(images)))
        if len(keep) < count:
            raise NNMarkError(f"source '{options.source}' gives only {len(keep)} distinct images", field="size",
                              expected=f"at most {len(keep)}", got=count)
        return images[keep[:count]], {}
