"""Host preflight: gather facts (``facts``), judge them (``checks``), report (``cli``: ``clawfleet host check``)."""
