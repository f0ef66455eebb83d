"""Argo CD: the REST client (``client``) over an HTTP layer with retries and deadlines (``http``)."""
