"""Exception types: one per domain, each message names the file/field and what was expected."""

from __future__ import annotations


class PudlabError(Exception):
    """Base class of every error pudlab raises on purpose (the CLI prints it in one line)."""


class DatasetError(PudlabError):
    """A dataset file is missing, malformed, or inconsistent."""


class SamplingError(PudlabError):
    """A sampling setting is invalid or cannot be satisfied by the source data."""


class ObfuscationError(PudlabError):
    """Obfuscation parameters are invalid."""


class ModelError(PudlabError):
    """A model config or a weight file does not fit."""


class SpecError(PudlabError):
    """An experiment / profile / simulation spec is invalid."""


class StoreError(PudlabError):
    """A result store is missing or inconsistent."""


class BundleError(PudlabError):
    """A proof-of-learning bundle is malformed or has been tampered with."""
