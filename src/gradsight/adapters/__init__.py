"""Adapters: gradsight's diagnostics for models of other libraries (:mod:`.torch`)."""
