"""revloop: a closed-loop revenue pipeline for e-commerce on Apache Kafka."""

from revloop.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
__version__ = "0.1.0"
