"""aloe-al: open-world deep active learning (ALOE, Xie et al., TMLR 2025)."""

__version__ = "0.1.0"
