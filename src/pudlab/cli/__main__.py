"""``python -m pudlab.cli``."""

from pudlab.cli import main

if __name__ == "__main__":
    main()
