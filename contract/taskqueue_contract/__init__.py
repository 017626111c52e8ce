"""Facts the operator, the worker image, the kubectl plugin and the dashboard share.

One module per fact, standard library only: `keys` (RQ's key layout), `registries`
(counting live entries), `env` (pod environment and Secret key names), `resource`
(the TaskQueue API's identity), `durations`, `timestamps`, `redaction`, `failures`
(typed Redis failure kinds), `tls` (a Redis URL from Secrets and TLS PEMs),
`worker_names` (which pod and work loop an RQ worker is) and `job_data` (reading RQ's
job hashes without running application code).
"""
