"""envdoctor fleet: one `check` per node through the launcher the cluster already has, then a comparison.

Data flows one way here too: launcher output (or report files) -> records -> per-node reports
(collect) -> fingerprints -> groups and outliers (summary) -> render. Nothing in this package
runs on the nodes except `member`, which `check --fleet-member` calls to write its report.
"""
