"""avkd: knowledge-distilled audio-visual video captioning, as a tracked sweep."""
__version__ = "0.1.0"
