"""The dashboard at `/` (SPEC §7): a page rendered here, its assets, and live updates."""
