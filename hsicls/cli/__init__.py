"""The command line, the top layer: one module per command (``preprocess``, ``train`` ...), each parsing its flags,
calling one function of :mod:`hsicls.api` and printing; :mod:`hsicls.cli.app` holds the application and the shared
flags, :mod:`hsicls.cli.args` derives flags from the option dataclasses, :mod:`hsicls.cli.main` is the entry point."""
