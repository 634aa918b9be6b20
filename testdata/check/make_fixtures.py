"""Writes report.json, a hub status report in the shape of fedmsg's own
check tests (moksha's MonitoringProducer), and report.out, what
fedmsg-check prints after it: json.dumps(report, indent=2,
sort_keys=True). Run with plain python3:

    python3 make_fixtures.py
"""
import json

report = {
    "consumers": [{
        "backlog": 0, "exceptions": 0, "headcount_in": 0, "headcount_out": 0,
        "initialized": True, "jsonify": True, "module": "test.consumers",
        "name": "TestConsumer", "times": [0.25, 1e-05], "topic": ["test", "caf\u00e9"],
    }, {
        "backlog": 2, "exceptions": 1, "headcount_in": 7, "headcount_out": 5,
        "initialized": False, "jsonify": True, "module": "test.consumers",
        "name": "SleepyConsumer", "times": [], "topic": ["*"],
    }],
    "producers": [{
        "exceptions": 0, "frequency": 5, "initialized": True,
        "last_ran": 1496780847.269628, "module": "moksha.hub.monitoring",
        "name": "MonitoringProducer", "now": False,
    }],
}
with open("report.json", "w") as f:
    f.write(json.dumps(report))
with open("report.out", "w") as f:
    f.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
