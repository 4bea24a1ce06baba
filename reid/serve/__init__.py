"""The search service: a gallery index over HTTP with a web page (:mod:`reid.serve.app`)."""
