"""The canary gate: judging a canary on live evidence and late labels, and acting on the plan.

``checks`` turns evidence into verdicts (pure), ``traffic`` reads events and errors by arm from
Prometheus or the scorers' own ``/metrics``, ``evidence`` reads the live window and the labels,
``controller`` holds the lease and walks a rollout through its steps, promoting or rolling back.
"""
