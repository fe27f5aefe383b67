#!/usr/bin/env python3
"""Write a large, deterministic feed for the benchmarks.

    gen_feed.py --enrolments 1000000 [--churn 1.0] [--seed 1] OUT.json

About 50 participants per course (one teacher, the rest students with no
roleid, as in the seed feed) over enrolments/5 users with 11-digit
usernames: 1,000,000 enrolments make 20,000 courses, 200,000 users and
about 30 MB.  --churn P writes the same feed with P percent of it changed
the way a term goes on: participants dropped and added, roles changed,
a few courses renamed, dropped and added.  The same arguments always give
the same bytes.
"""
import argparse
import random
import sys


def base(n_enrol, seed):
    """The courses as a list of [shortname, name, [(user, role|None)...]]."""
    rng = random.Random(seed)
    n_courses = max(1, n_enrol // 50)
    n_users = max(10, n_enrol // 5)
    courses = []
    left = n_enrol
    for i in range(n_courses):
        size = left // (n_courses - i)
        size = max(1, size + rng.randint(-5, 5)) if i < n_courses - 1 else left
        size = min(size, n_users)
        left -= size
        # Students of one programme share courses: draw near a centre.
        centre = rng.randrange(n_users)
        seen = set()
        people = []
        while len(people) < size:
            u = (centre + int(rng.gauss(0, 2000))) % n_users
            if u in seen:
                continue
            seen.add(u)
            people.append([u, "teacher" if not people else None])
        courses.append(["C%06d" % i, "Course %d - %s" % (
            i, rng.choice(["Geography", "Physics", "Math", "History",
                           "Chemistry", "Law", "Music", "Biology"])),
            people])
    return courses, n_users


def churn(courses, n_users, percent, seed):
    """Change about percent % of the enrolments, and a few courses."""
    rng = random.Random(seed + 1000)
    total = sum(len(c[2]) for c in courses)
    changes = int(total * percent / 100)
    for _ in range(changes):
        c = rng.choice(courses)
        kind = rng.random()
        if kind < 0.4 and len(c[2]) > 2:
            del c[2][rng.randrange(1, len(c[2]))]
        elif kind < 0.8:
            have = {p[0] for p in c[2]}
            u = rng.randrange(n_users)
            if u not in have:
                c[2].append([u, None])
        else:
            p = rng.choice(c[2])
            p[1] = "teacher" if p[1] is None else None
    n_courses = len(courses)
    for _ in range(max(1, n_courses // 200)):
        c = rng.choice(courses)
        c[1] = c[1] + " (renamed)"
    for _ in range(max(1, n_courses // 2000)):
        del courses[rng.randrange(len(courses))]
    for i in range(max(1, n_courses // 2000)):
        people = [[rng.randrange(n_users), None] for _ in range(40)]
        people = list({p[0]: p for p in people}.values())
        people[0][1] = "teacher"
        courses.append(["N%06d" % i, "New course %d" % i, people])
    return courses


def write(courses, out):
    out.write('{\n"courses": [\n')
    for i, (short, name, people) in enumerate(courses):
        out.write('{\n"shortname": "%s",\n"name": "%s",\n"participants": [\n'
                  % (short, name))
        lines = []
        for u, role in people:
            if role is None:
                lines.append('{ "username": "%011d" }' % u)
            else:
                lines.append('{ "username": "%011d", "roleid": "%s" }'
                             % (u, role))
        out.write(",\n".join(lines))
        out.write("\n]\n}%s\n" % ("," if i < len(courses) - 1 else ""))
    out.write("]\n}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--enrolments", type=int, default=1000000)
    ap.add_argument("--churn", type=float, default=0.0,
                    help="percent of enrolments changed")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("out")
    a = ap.parse_args()
    courses, n_users = base(a.enrolments, a.seed)
    if a.churn > 0:
        courses = churn(courses, n_users, a.churn, a.seed)
    with open(a.out, "w", buffering=1 << 20) as f:
        write(courses, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
