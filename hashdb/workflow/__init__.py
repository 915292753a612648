"""The consortium workflow: the rules that make a shared hash list trustworthy.

One module per job, each owning its tables (declared in hashdb/store/schema.py):

    actor          who is acting (member, key, request id) and the admin check
    labels         the label taxonomy admins manage; contributions must use it
    contributions  admitting a batch: labels checked, status chosen, history, audit
    vetting        the status lifecycle: approve, reject, dispute, resolve, retire,
                   expire; every move recorded with who, when and why
    incidents      crisis mode: contributions tagged with an open incident go live
    feedback       agree / disagree / false_positive; disagreement disputes a hash
    outcomes       what a member did with a match, and how fast
    match_counts   matches answered, per member, hash (and so label), per hour
    audit          the append-only, hash-chained audit log
    export         the change log as a feed of additions, updates and tombstones
    sync           a local copy that follows a central hashdb's feed over HTTP
    reports        the transparency report

Every function takes the narrow things it needs (an Engine, the acting `Actor`,
plain values) and returns typed results or raises the errors of hashdb.errors, so
the HTTP handlers and the CLI call the same code.
"""
