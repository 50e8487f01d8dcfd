"""The Lumiflow operator (kopf): turns each ``Analysis`` into a dask-kubernetes ``DaskJob``.

Run it with ``kopf run -m lumiflow_operator --namespace NS`` (or ``--all-namespaces``); the Helm
chart does that from the Lumiflow image. :mod:`.children` builds the objects, :mod:`.handlers`
holds the kopf handlers.
"""

from . import handlers  # noqa: F401  (registers the handlers with kopf on import)
