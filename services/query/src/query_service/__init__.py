"""The query service: HTTP reads over the read models the projector maintains."""
