"""`python -m fdguard`: the same as the `fdguard` command."""

from fdguard.cli.main import main

if __name__ == "__main__":
    main()
