"""A saga through the PyPI `dtmcli` client, written the way its README and users write one.

usage: saga.py DTM_URL BUSI_URL [sequential|concurrent]

DTM_URL is the server's API base (http://host:port/api/dtmsvr), BUSI_URL the base of the
branch service. Steps: TransOut/TransOutCompensate, TransIn/TransInCompensate (and, when
concurrent, a third step Notify/NotifyCompensate that runs after both: orders {2: [0, 1]}).
Whether the saga commits or rolls back is the branch service's choice (409 from an action).
Prints one JSON line: {"gid": ..., "payloads": {step url suffix: body text sent}}.
"""

import json
import sys

from dtmcli import saga, utils


def main():
    dtm, busi = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "sequential"
    gid = utils.gen_gid(dtm)
    out = {"user_id": 1, "amount": 30}
    into = {"user_id": 2, "amount": 30}
    s = saga.Saga(dtm, gid)
    s.add(out, busi + "/TransOut", busi + "/TransOutCompensate")
    s.add(into, busi + "/TransIn", busi + "/TransInCompensate")
    payloads = {"TransOut": json.dumps(out), "TransIn": json.dumps(into)}
    if mode == "concurrent":
        note = {"notify": "done"}
        s.add(note, busi + "/Notify", busi + "/NotifyCompensate")
        payloads["Notify"] = json.dumps(note)
        # dtmcli 1.7.7.0 never initialises these two attributes, which add_branch_order and
        # submit read (spec §8.5): its users set them by hand.
        s.orders = {}
        s.concurrent = True
        s.set_concurrent()
        s.add_branch_order(2, [0, 1])
    elif mode != "sequential":
        raise SystemExit("unknown mode " + mode)
    s.submit()
    print(json.dumps({"gid": gid, "payloads": payloads}))


if __name__ == "__main__":
    main()
