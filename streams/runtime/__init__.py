"""The stream runtime: quixstreams wiring (``quix``) and the worker's inputs. Hand-written
processors run in :mod:`revloop.exactly_once`, shared with the connectors."""
