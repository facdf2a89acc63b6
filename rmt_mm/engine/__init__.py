"""What runs inside mmengine's training loop: hooks (:mod:`.hooks`) and optimizer constructors
(:mod:`.optimizers`), registered by :func:`rmt_mm.plugin.install`."""
