"""``vigil backtest``: a plant's own history through the real feature builder, models and alert lifecycle, scored.

The tool composes the stages in one process (no Kafka), so it lives beside them rather than in the kernel.
"""
