"""From an alpha matte to a cutout: foreground colours, RGBA pictures and composites (foreground), a
folder of them (cutout) and the foreground estimator's speed (benchmark)."""
