"""`headway doctor`: a production-readiness audit of one environment, scored out of 100 by category."""
