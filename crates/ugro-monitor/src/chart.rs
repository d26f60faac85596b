//! The GPU utilisation chart of the summary (PNG, plotters).
