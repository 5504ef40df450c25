"""streams layer (see docs/architecture.md)."""

import contextlib
import warnings

# confluent_kafka's schema-registry client (which quixstreams imports) imports authlib, which
# installs an "always" filter for its own deprecation warnings and then warns, on import, about
# its httpx integration: noise on every command, nothing to act on. Our filter goes in front.
with contextlib.suppress(ImportError):
    import authlib.deprecate  # noqa: F401
warnings.filterwarnings(
    "ignore", message="The httpx module is deprecated", category=DeprecationWarning
)
