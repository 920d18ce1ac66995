"""The live feature browser (``probsae serve RUN``): a local web app over one run.

Type text and see its tokens shaded by latent activations and its top latents; open a latent's
page (density, flags, position histogram, top contexts, percentile buckets, logit effects,
explanation: the dashboard's data, ``interp.dashboard.LatentPages``); search every alive latent by
explanation or top tokens; and, on a causal LM, steer generation with a latent
(``interp.steering``), with and without it side by side. ``state.py``: what the app knows about
the run (``Browser``); ``pages.py``: the HTML; ``app.py``: the FastAPI routes and the uvicorn
server (``ServeConfig``: loopback unless allowed otherwise).
"""

from .app import ServeConfig, bind, create_app, server
from .state import Browser

__all__ = ["Browser", "ServeConfig", "bind", "create_app", "server"]
