"""pudlab: dataset obfuscation and its measured impact on Privacy, Utility and Distinguishability.

Implements Yu et al., "Dataset Obfuscation: Its Applications to and Impacts on Edge Machine
Learning". Data flows one way: ``data`` -> ``sampling`` -> ``obfuscation`` -> ``model`` ->
``training`` -> ``metrics`` -> ``experiments`` -> ``report`` / ``plots``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
