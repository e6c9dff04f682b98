"""Hit-counter badges: shields.io-identical SVGs, their parameters and the edge renderer."""
