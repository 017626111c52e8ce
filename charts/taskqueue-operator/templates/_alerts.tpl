{{/*
The queue-health rules: the PrometheusRule's spec (templates/prometheusrule.yaml) and, rendered
with the default values, files/alerts.yaml for a Prometheus without the Prometheus Operator
(tests/unit/chart/test_alert_rules.py keeps the two equal and runs promtool on both).
Thresholds follow each TaskQueue's own targets where it has one (the operator exports them:
taskqueue_target_queue_seconds for every autoscaled TaskQueue, taskqueue_max_replicas, and
taskqueue_target_backlog_per_worker where the cap is set; the fixed-replicas thresholds
apply only where no target is exported)
and come from .Values.metrics.prometheusRule.thresholds where it has none.
Prometheus' own templates ({{ $labels.x }}) are written {{`{{ $labels.x }}`}} here.
*/}}
{{- define "taskqueue-operator.alertRules" -}}
{{- $t := .Values.metrics.prometheusRule.thresholds -}}
groups:
  - name: taskqueue.records
    rules:
      # Pending + running jobs: what spec.scaling.targetBacklogPerWorker counts per worker.
      - record: taskqueue:backlog_jobs
        expr: sum by (namespace, taskqueue) (taskqueue_jobs{status=~"queued|started"})
      # The backlog an autoscaled TaskQueue with the optional targetBacklogPerWorker cap is
      # sized for at maxReplicas (max by: one series
      # per TaskQueue whatever the scrape labels, even while two operator pods hand over).
      - record: taskqueue:backlog_capacity_jobs
        expr: |
          max by (namespace, taskqueue) (taskqueue_target_backlog_per_worker)
          * on (namespace, taskqueue) max by (namespace, taskqueue) (taskqueue_max_replicas)
      # Failed / (failed + finished) executions over 10 minutes, from the counters; no
      # series (rather than NaN) while no job ran.
      - record: taskqueue:job_failure_ratio:rate10m
        expr: |
          sum by (namespace, taskqueue) (rate(taskqueue_jobs_failed_total[10m]))
          / (
            (
              sum by (namespace, taskqueue) (rate(taskqueue_jobs_failed_total[10m]))
              + sum by (namespace, taskqueue) (rate(taskqueue_jobs_finished_total[10m]))
            ) > 0
          )
  - name: taskqueue.rules
    rules:
      - alert: TaskQueueBacklogWarning
        expr: |
          (
            taskqueue:backlog_jobs > on (namespace, taskqueue) taskqueue:backlog_capacity_jobs
            and taskqueue:backlog_jobs <= on (namespace, taskqueue) {{ $t.backlogCriticalFactor }} * taskqueue:backlog_capacity_jobs
          )
          or (
            sum by (namespace, taskqueue) (taskqueue_jobs{status="queued"}) > {{ $t.fixedBacklog.warning }}
            and sum by (namespace, taskqueue) (taskqueue_jobs{status="queued"}) <= {{ $t.fixedBacklog.critical }}
            unless on (namespace, taskqueue) (
              taskqueue:backlog_capacity_jobs
              or max by (namespace, taskqueue) (taskqueue_target_queue_seconds)
            )
          )
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}`}} holds {{`{{ $value }}`}} jobs, more than it is sized for"
          description: "For 5 minutes: more than targetBacklogPerWorker x maxReplicas pending + running jobs (autoscaled), or more than {{ $t.fixedBacklog.warning }} pending jobs (fixed replicas; an autoscaled TaskQueue without the cap alerts on its wait, TaskQueueJobWaitAboveTarget). Check `kubectl get tq` (DESIRED vs READY) and scaling.maxReplicas."
      - alert: TaskQueueBacklogCritical
        expr: |
          taskqueue:backlog_jobs > on (namespace, taskqueue) {{ $t.backlogCriticalFactor }} * taskqueue:backlog_capacity_jobs
          or (
            sum by (namespace, taskqueue) (taskqueue_jobs{status="queued"}) > {{ $t.fixedBacklog.critical }}
            unless on (namespace, taskqueue) (
              taskqueue:backlog_capacity_jobs
              or max by (namespace, taskqueue) (taskqueue_target_queue_seconds)
            )
          )
        for: 5m
        labels: {severity: critical}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}`}} holds {{`{{ $value }}`}} jobs: the workers cannot keep up"
          description: "For 5 minutes: more than {{ $t.backlogCriticalFactor }} x targetBacklogPerWorker x maxReplicas pending + running jobs (autoscaled), or more than {{ $t.fixedBacklog.critical }} pending jobs (fixed replicas)."
      - alert: TaskQueueFailureRateWarning
        expr: |
          taskqueue:job_failure_ratio:rate10m > {{ $t.failureRatio.warning }}
          and taskqueue:job_failure_ratio:rate10m <= {{ $t.failureRatio.critical }}
        for: 10m
        labels: {severity: warning}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}: {{ $value | humanizePercentage }}`}} of jobs fail"
          description: "More than {{ $t.failureRatio.warning }} of the job executions of the last 10 minutes failed. `kubectl taskqueue dlq list` shows their exceptions."
      - alert: TaskQueueFailureRateCritical
        expr: taskqueue:job_failure_ratio:rate10m > {{ $t.failureRatio.critical }}
        for: 10m
        labels: {severity: critical}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}: {{ $value | humanizePercentage }}`}} of jobs fail"
          description: "More than {{ $t.failureRatio.critical }} of the job executions of the last 10 minutes failed."
      - alert: TaskQueueNoWorkers
        expr: |
          sum by (namespace, taskqueue) (taskqueue_jobs{status="queued"}) > 0
          and sum by (namespace, taskqueue) (taskqueue_workers) == 0
        for: 2m
        labels: {severity: critical}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}`}}: jobs wait and no worker runs"
          description: "Jobs are pending and no RQ worker is registered for 2 minutes. Check the worker pods (image, Secret, crash loop)."
      - alert: TaskQueueDeadLettersWarning
        expr: |
          sum by (namespace, taskqueue) (taskqueue_jobs{status="failed"}) > {{ $t.deadLetters.warning }}
          and sum by (namespace, taskqueue) (taskqueue_jobs{status="failed"}) <= {{ $t.deadLetters.critical }}
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}: {{ $value }}`}} dead-letter jobs"
          description: "More than {{ $t.deadLetters.warning }} jobs in the failed registries. Review, then requeue or purge them."
      - alert: TaskQueueDeadLettersCritical
        expr: sum by (namespace, taskqueue) (taskqueue_jobs{status="failed"}) > {{ $t.deadLetters.critical }}
        for: 5m
        labels: {severity: critical}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}: {{ $value }}`}} dead-letter jobs"
          description: "More than {{ $t.deadLetters.critical }} jobs in the failed registries."
      - alert: TaskQueueJobWaitAboveTarget
        expr: |
          max by (namespace, taskqueue, queue) (taskqueue_oldest_job_age_seconds)
          > on (namespace, taskqueue) group_left()
          max by (namespace, taskqueue) (taskqueue_target_queue_seconds)
        for: 5m
        labels: {severity: warning}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}: the oldest job of {{ $labels.queue }} waits {{ $value | humanizeDuration }}`}}"
          description: "Jobs wait longer than spec.scaling.targetQueueSeconds. Raise maxReplicas or check why workers are not ready."
      - alert: TaskQueueRedisUnreachable
        expr: taskqueue_redis_up == 0
        for: 1m
        labels: {severity: critical}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.taskqueue }}`}}: Redis is unreachable"
          description: "The operator cannot read the queue's Redis. Replicas are held; see the RedisReachable condition."
{{- end -}}
