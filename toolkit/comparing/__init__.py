"""compare: plan rows -> an executor measures each job -> Measurements -> scoring -> judging.

Kept empty of imports: a worker imports `toolkit.comparing.worker`, and nothing more should load.
"""
