"""Synthetic fleets for the planner benchmark (issue 3).

Shared clusters of 50-200 tenants, dedicated clusters of 1-3, several zones,
about 30% of tenants with dependencies (on earlier tenants, so no cycles),
weekly, daily and fortnightly windows, and the example fleet's three
calendars.  Deterministic for a given (tenants, seed).

    python3 bench/gen_fleet.py 100000 > fleet.yaml
"""
import random
import sys

ZONES = ["America/Chicago", "America/New_York", "America/Denver", "America/Los_Angeles",
         "Europe/Berlin", "Europe/London", "Asia/Tokyo", "UTC"]
CRIT = ["low", "standard", "standard", "high", "critical"]
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


def window(rng):
    kind = rng.random()
    start = f"{rng.randrange(0, 24):02d}:{rng.choice(['00', '30'])}"
    dur = rng.choice(["1h", "2h", "3h", "4h"])
    if kind < 0.5:
        return f"{{rrule: 'FREQ=WEEKLY;BYDAY={rng.choice(DAYS)}', start: '{start}', duration: {dur}}}"
    if kind < 0.8:
        return f"{{rrule: 'FREQ=DAILY', start: '{start}', duration: {dur}}}"
    return (f"{{rrule: 'FREQ=WEEKLY;INTERVAL=2;BYDAY={rng.choice(DAYS)}', start: '{start}', "
            f"duration: {dur}, anchor: '2026-01-0{rng.randrange(1, 8)}'}}")


def generate(n, seed=1, out=sys.stdout):
    rng = random.Random(seed)
    w = out.write
    w("apiVersion: wavesched/v1\nkind: Fleet\nclusters:\n")
    clusters = []   # (name, hosting, size)
    left = n
    i = 0
    while left > 0:
        if rng.random() < 0.2:
            size, hosting = rng.randrange(1, 4), "dedicated"
        else:
            size, hosting = rng.randrange(50, 201), "shared"
        size = min(size, left)
        name = f"{hosting[:3]}-{i:05d}"
        clusters.append((name, hosting, size))
        w(f"  - name: {name}\n    hosting: {hosting}\n    region: r{i % 5}\n"
          f"    max_parallel: {1 if hosting == 'dedicated' else rng.randrange(2, 6)}\n"
          f"    timezone: {rng.choice(ZONES)}\n"
          f"    windows:\n      - {{rrule: 'FREQ=WEEKLY;BYDAY=SU', start: '01:00', duration: 4h}}\n"
          f"    deploy: {{executor: webhook, url: 'http://127.0.0.1:9100/deploy'}}\n")
        left -= size
        i += 1
    w("tenants:\n")
    t = 0
    for name, hosting, size in clusters:
        for _ in range(size):
            env = "training" if t % 97 == 0 else ("staging" if t % 89 == 0 else "production")
            w(f"  - slug: t{t:07d}\n    cluster: {name}\n    criticality: {rng.choice(CRIT)}\n"
              f"    timezone: {rng.choice(ZONES)}\n    labels: {{env: {env}, process: "
              f"{rng.choice(['finance', 'payroll', 'inventory', 'crm'])}}}\n"
              f"    version: '17.0.3'\n")
            if t > 0 and rng.random() < 0.3:
                deps = sorted({f"t{rng.randrange(max(0, t - 500), t):07d}" for _ in range(rng.randrange(1, 3))})
                w(f"    depends_on: [{', '.join(deps)}]\n")
            if rng.random() < 0.95:
                w("    windows:\n")
                for _ in range(rng.randrange(1, 3)):
                    w(f"      - {window(rng)}\n")
            t += 1
    w("""calendars:
  - name: month-end-close
    hard: true
    applies_to: {criticality: [critical, high]}
    occurrences:
      - {rrule: "FREQ=MONTHLY;BYMONTHDAY=-3,-2,-1", start: "00:00", duration: 24h, timezone: America/Chicago}
      - {rrule: "FREQ=MONTHLY;BYMONTHDAY=1", start: "00:00", duration: 24h, timezone: America/Chicago}
  - name: payroll
    hard: false
    applies_to: {labels: {process: [payroll, finance]}}
    occurrences:
      - {rrule: "FREQ=MONTHLY;BYMONTHDAY=14,15", start: "00:00", duration: 24h, timezone: America/Chicago}
  - name: holiday-freeze
    hard: false
    occurrences:
      - {from: "2026-12-23T00:00:00Z", to: "2027-01-02T00:00:00Z"}
""")


if __name__ == "__main__":
    generate(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
