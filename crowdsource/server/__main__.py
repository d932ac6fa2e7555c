"""`python -m crowdsource.server`: start the server (see --help)."""

from crowdsource.server.app import main

if __name__ == "__main__":
    main()
