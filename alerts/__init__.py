"""Alerts: the last stage. Predictions, drift and maintenance records become InfluxDB points, alert episodes
with a lifecycle planners can act on (open, update, acknowledge, escalate, resolve, silence, inhibit), and
notifications (webhook, e-mail, Slack/Teams) delivered through a durable outbox: none lost, none resent after a
restart (a crash between a receiver's answer and the outbox update resends once, with the same idempotency id).

Reading order: :mod:`alerts.episodes` and :mod:`alerts.lifecycle` (the state machine), :mod:`alerts.routing`,
:mod:`alerts.render` (what a planner reads),
:mod:`alerts.receivers` and :mod:`alerts.signing` (how it is delivered), :mod:`alerts.store` and
:mod:`alerts.outbox` (durability), :mod:`alerts.service` (the Kafka consumer tying it together),
:mod:`alerts.http` and :mod:`alerts.ctl` (acknowledge, assign, silence), :mod:`alerts.query` (questions asked of
InfluxDB).
"""
