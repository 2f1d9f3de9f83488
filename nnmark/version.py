"""The package version, in a module of its own so any layer can record it without importing the
package facade (``nnmark/__init__.py``), which reaches up to the public API."""
__version__ = "0.1.0"
