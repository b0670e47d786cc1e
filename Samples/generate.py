#!/usr/bin/env python3
"""Deterministic realistic long inputs for the longheads jobs (python3, standard library only).

  generate.py logs     [--seed S] [--lines N]                      > logs.txt
      A day of server logs (varied services, levels, latencies) with one incident buried inside:
      a burst of payments errors after a bad config push. --incident FILE writes where it is.
  generate.py contract [--seed S] [--tokens T] [--questions Q.jsonl] [--markdown] > contract.txt
      A long services agreement: numbered clauses of varied boilerplate around 21 clauses that each
      hold one fact (one of them an unusual early-termination fee). --questions writes 20 questions
      with the expected answer (alternatives separated by |) and the byte range of the clause that holds it.
  generate.py records  [--seed S] [--lines N] [--labels L.txt]     > records.txt
      Customer-support messages, one per line; about 1 in 10 asks for a refund. --labels writes one
      0/1 per line (1: asks for a refund), the ground truth for `longheads filter`.

Same seed, same bytes. Text is ASCII, so byte offsets equal character offsets.
"""
import argparse
import json
import random
import sys

# --------------------------------------------------------------------------------------------------
# (a) server logs

SERVICES = ["api-gateway", "auth", "payments", "search", "inventory", "notifications", "web", "scheduler"]
PATHS = ["/v1/orders", "/v1/orders/{n}", "/v1/cart", "/v1/products/{n}", "/v1/search", "/v1/users/{n}",
         "/v1/checkout", "/health", "/v1/recommendations", "/v1/reviews/{n}"]


def hexid(rng, n=6):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def normal_line(rng, service):
    """One routine log line of `service`: (level, message)."""
    r = rng.random()
    if service in ("api-gateway", "web"):
        method = rng.choice(["GET"] * 6 + ["POST"] * 2 + ["PUT", "DELETE"])
        path = rng.choice(PATHS).replace("{n}", str(rng.randint(1, 99999)))
        status = rng.choices([200, 201, 204, 301, 304, 400, 401, 404, 429, 500],
                             [70, 6, 3, 1, 5, 4, 3, 5, 1, 0.3])[0]
        ms = int(rng.lognormvariate(3.2, 0.7))
        level = "INFO" if status < 400 else ("WARN" if status < 500 else "ERROR")
        return level, f"{method} {path} {status} {ms}ms req={hexid(rng)}"
    if service == "auth":
        if r < 0.6:
            return "INFO", f"login ok user={rng.randint(1000, 99999)} method={rng.choice(['password', 'sso', 'token'])} {int(rng.lognormvariate(2.5, 0.5))}ms"
        if r < 0.85:
            return "INFO", f"token refreshed user={rng.randint(1000, 99999)} ttl=3600s"
        if r < 0.97:
            return "WARN", f"login failed user={rng.randint(1000, 99999)} reason={rng.choice(['bad_password', 'locked', 'expired_token'])}"
        return "DEBUG", f"jwks cache refreshed keys={rng.randint(2, 5)}"
    if service == "payments":
        if r < 0.7:
            return "INFO", f"charge ok order={rng.randint(100000, 999999)} amount={rng.randint(5, 900)}.{rng.randint(0, 99):02d} EUR psp={rng.choice(['adyen', 'stripe'])} {int(rng.lognormvariate(4.4, 0.4))}ms"
        if r < 0.9:
            return "INFO", f"refund ok order={rng.randint(100000, 999999)} amount={rng.randint(5, 300)}.00 EUR"
        if r < 0.99:
            return "WARN", f"psp retry order={rng.randint(100000, 999999)} attempt=2 reason=timeout"
        return "ERROR", f"card declined order={rng.randint(100000, 999999)} code={rng.choice(['05', '51', '54'])}"
    if service == "search":
        if r < 0.85:
            return "INFO", f"query ok terms={rng.randint(1, 6)} hits={rng.randint(0, 5000)} {int(rng.lognormvariate(3.6, 0.6))}ms"
        if r < 0.97:
            return "DEBUG", f"index segment merged segments={rng.randint(3, 30)} size={rng.randint(10, 900)}MB"
        return "WARN", f"slow query {rng.randint(800, 2500)}ms terms={rng.randint(4, 9)}"
    if service == "inventory":
        if r < 0.8:
            return "INFO", f"stock updated sku=SKU-{rng.randint(10000, 99999)} qty={rng.randint(0, 400)} warehouse={rng.choice(['AMS1', 'FRA2', 'DUB1'])}"
        if r < 0.95:
            return "INFO", f"reservation ok order={rng.randint(100000, 999999)} items={rng.randint(1, 8)}"
        return "WARN", f"low stock sku=SKU-{rng.randint(10000, 99999)} qty={rng.randint(0, 5)}"
    if service == "notifications":
        if r < 0.85:
            return "INFO", f"email sent template={rng.choice(['order_confirmation', 'shipping_update', 'password_reset', 'newsletter'])} {int(rng.lognormvariate(3.0, 0.5))}ms"
        if r < 0.98:
            return "INFO", f"push sent devices={rng.randint(1, 4)}"
        return "WARN", f"smtp deferred retry_in={rng.choice([30, 60, 120])}s"
    # scheduler
    if r < 0.8:
        return "INFO", f"job {rng.choice(['reindex', 'cleanup-sessions', 'export-orders', 'sync-prices'])} finished in {rng.randint(1, 600)}s"
    return "DEBUG", f"job queue depth={rng.randint(0, 40)}"


INCIDENT = [
    ("13:57:41", "INFO", "scheduler", "config push payments/v2.31 applied by deploy-bot: ledger_db.pool_size=5 (was 50)"),
]


def incident_lines(rng, count):
    """The buried incident: payments runs out of ledger-db connections after the config push."""
    lines = list(INCIDENT)
    t = 14 * 3600 + 2 * 60
    for i in range(count):
        t += rng.randint(3, 20)
        hh, mm, ss = t // 3600, t % 3600 // 60, t % 60
        stamp = f"{hh:02d}:{mm:02d}:{ss:02d}"
        k = rng.random()
        if k < 0.55:
            lines.append((stamp, "ERROR", "payments", f"charge failed order={rng.randint(100000, 999999)}: ledger-db connection pool exhausted (5/5 in use), waited 3000ms"))
        elif k < 0.8:
            lines.append((stamp, "ERROR", "api-gateway", f"POST /v1/checkout 503 {rng.randint(3000, 3100)}ms upstream=payments req={hexid(rng)}"))
        else:
            lines.append((stamp, "WARN", "payments", f"ledger-db pool wait queue={rng.randint(20, 90)} oldest={rng.randint(2500, 3000)}ms"))
    t += 40
    hh, mm, ss = t // 3600, t % 3600 // 60, t % 60
    lines.append((f"{hh:02d}:{mm:02d}:{ss:02d}", "INFO", "scheduler", "config rollback payments/v2.30 applied by oncall: ledger_db.pool_size=50"))
    return lines


def logs(rng, n, incident_out=None):
    burst = max(20, n // 250)
    normal = n - burst - 2
    times = sorted(rng.randint(0, 86399) for _ in range(normal))
    weights = [18, 8, 10, 9, 8, 6, 24, 3]
    events = []
    for t in times:
        s = rng.choices(SERVICES, weights)[0]
        level, msg = normal_line(rng, s)
        events.append((t, level, s, msg))
    for stamp, level, s, msg in incident_lines(rng, burst):
        h, m, sec = map(int, stamp.split(":"))
        events.append((h * 3600 + m * 60 + sec, level, s, msg))
    events.sort(key=lambda e: e[0])
    out = []
    first = last = None
    offset = 0
    for i, (t, level, s, msg) in enumerate(events):
        ms = rng.randint(0, 999)
        line = f"2026-03-14T{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}.{ms:03d}Z {level:<5} {s:<13} {msg}\n"
        if "ledger_db.pool_size=5 " in msg or "ledger-db" in msg:
            first = offset if first is None else first
            last = offset + len(line)
        out.append(line)
        offset += len(line)
    if incident_out:
        with open(incident_out, "w") as f:
            json.dump({"start": first, "end": last, "service": "payments",
                       "cause": "config push set ledger_db.pool_size=5 (was 50): ledger-db connection pool exhausted"}, f)
            f.write("\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# (b) contract

FACTS = [
    ("Effective Date", "This Agreement is effective as of March 3, 2026 (the \"Effective Date\") and binds the Parties from that date.",
     "When is the agreement effective?", "March 3, 2026"),
    ("Governing Law", "This Agreement shall be governed by and construed in accordance with the laws of the State of Delaware, without regard to its conflict of laws principles.",
     "Which law governs the agreement?", "Delaware"),
    ("Payment Terms", "Customer shall pay each undisputed invoice within forty-five (45) days of the invoice date.",
     "Within how many days must invoices be paid?", "45"),
    ("Late Payment", "Amounts not paid when due shall bear interest at the rate of one and one-half percent (1.5%) per month.",
     "What interest applies to late payments?", "1.5%"),
    ("Limitation of Liability", "Each Party's aggregate liability shall not exceed the fees paid by Customer in the twelve (12) months preceding the claim.",
     "What is the cap on liability?", "twelve|12 months"),
    ("Survival of Confidentiality", "The obligations of confidentiality shall survive for five (5) years after termination of this Agreement.",
     "How long do confidentiality obligations survive termination?", "five|5 years"),
    ("Insurance", "Provider shall maintain commercial general liability insurance of not less than $5,000,000 per occurrence.",
     "How much liability insurance must the provider keep?", "5,000,000"),
    ("Termination for Convenience", "Customer may terminate this Agreement for convenience upon ninety (90) days' prior written notice to Provider.",
     "How much notice is needed to terminate for convenience?", "90"),
    ("Early Termination Fee", "If Customer terminates this Agreement for any reason other than Provider's uncured material breach, Customer shall pay Provider an early termination fee equal to two hundred fifty percent (250%) of all fees that would have become payable during the remainder of the then-current term.",
     "What fee is due if the customer terminates early?", "250%"),
    ("Service Availability", "Provider shall make the Services available at least 99.9% of each calendar month, excluding scheduled maintenance.",
     "What uptime does the provider commit to?", "99.9%"),
    ("Service Credits", "For each full 0.1% below the availability commitment, Customer shall receive a credit of five percent (5%) of the monthly fee.",
     "What service credit applies when availability is missed?", "5%"),
    ("Audit Rights", "Customer may audit Provider's compliance once per calendar year upon thirty (30) days' written notice.",
     "How often may the customer audit the provider?", "once per calendar year|once a year|annually"),
    ("Return and Deletion of Data", "Within sixty (60) days after termination, Provider shall delete all Customer Data in its possession.",
     "When must customer data be deleted after termination?", "60"),
    ("Non-Solicitation", "During the term and for eighteen (18) months thereafter, neither Party shall solicit the employees of the other Party.",
     "How long does the non-solicitation obligation last after the term?", "eighteen|18"),
    ("Arbitration", "Any dispute shall be finally resolved by arbitration administered by the American Arbitration Association, seated in Wilmington, Delaware.",
     "Where is arbitration seated?", "Wilmington"),
    ("Price Adjustments", "Provider may increase the fees once per year by no more than four percent (4%).",
     "By how much may the provider raise fees each year?", "4%"),
    ("Subcontracting", "Provider shall not subcontract any of its obligations without Customer's prior written consent.",
     "What does the provider need before subcontracting?", "consent"),
    ("Security Incidents", "Provider shall notify Customer of any Security Incident without undue delay and in any event within seventy-two (72) hours.",
     "Within how many hours must a security incident be reported?", "72"),
    ("Initial Term", "The initial term of this Agreement is three (3) years from the Effective Date.",
     "How long is the initial term?", "three|3 years"),
    ("Renewal", "Thereafter this Agreement renews automatically for successive one (1) year terms unless either Party gives notice of non-renewal.",
     "How does the agreement renew?", "one|1 year"),
    ("Force Majeure Termination", "If a Force Majeure Event continues for more than sixty (60) days, either Party may terminate this Agreement upon written notice.",
     "After how many days of force majeure may a party terminate?", "sixty|60"),
]

SUBJECTS = ["Provider", "Customer", "Each Party", "Neither Party", "The receiving Party", "The disclosing Party"]
VERBS = ["shall use commercially reasonable efforts to", "shall", "may, at its discretion,", "shall promptly", "agrees to", "undertakes to"]
ACTIONS = [
    "maintain accurate books and records relating to the Services",
    "comply with all applicable laws and regulations in performing its obligations",
    "cooperate in good faith to resolve any operational issue",
    "provide reasonable assistance upon written request",
    "designate a representative responsible for coordination",
    "keep the other Party reasonably informed of material developments",
    "implement and maintain appropriate technical and organizational measures",
    "refrain from any act that would bring the other Party into disrepute",
    "ensure that its personnel are suitably qualified and supervised",
    "review the applicable documentation at reasonable intervals",
    "give the other Party reasonable access to relevant information",
    "take all steps reasonably necessary to mitigate any loss",
]
QUALIFIERS = [
    "in accordance with the Documentation",
    "subject to the terms of this Agreement",
    "to the extent permitted by applicable law",
    "except as otherwise agreed in writing",
    "during the term of this Agreement",
    "in a manner consistent with good industry practice",
    "at its own cost and expense",
    "without undue delay",
]
TAILS = [
    "Nothing in this Section shall limit any other right or remedy available under this Agreement.",
    "Any failure to do so shall not, by itself, constitute a material breach.",
    "The Parties acknowledge that this obligation is reasonable in scope.",
    "Such obligation applies mutatis mutandis to any Affiliate of the Party concerned.",
    "This Section shall be interpreted in light of the purposes of this Agreement.",
    "Requests under this Section shall be made through the designated representatives.",
]
ARTICLE_TITLES = ["Definitions", "Services", "Customer Obligations", "Provider Obligations", "Fees and Payment", "Term and Termination",
                  "Confidentiality", "Data Protection", "Warranties", "Indemnification", "Liability", "Intellectual Property",
                  "Insurance", "Compliance", "Governance", "Dispute Resolution", "Miscellaneous"]
HEADS = ["Cooperation", "Records", "Personnel", "Compliance with Laws", "Access", "Mitigation", "Representatives", "Documentation",
         "Reporting", "Assistance", "Standards", "Reviews", "Notices", "Changes", "Approvals", "Quality", "Continuity"]


def filler(rng):
    parts = []
    for _ in range(rng.randint(2, 4)):
        parts.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(ACTIONS)} {rng.choice(QUALIFIERS)}.")
    if rng.random() < 0.6:
        parts.append(rng.choice(TAILS))
    return " ".join(parts)


def contract(rng, tokens, questions_out=None, markdown=False):
    # About 81 tokens per clause (ARTICLE headings included) with SmolLM2's tokenizer.
    n_clauses = max(len(FACTS) + 5, tokens // 81)
    slots = sorted(rng.sample(range(2, n_clauses - 2), len(FACTS)))
    order = list(range(len(FACTS)))
    rng.shuffle(order)
    # The clause that matters sits about 60% into the document.
    etf = next(i for i, (h, *_rest) in enumerate(FACTS) if h == "Early Termination Fee")
    mid = min(range(len(slots)), key=lambda k: abs(slots[k] - int(0.6 * n_clauses)))
    j = order.index(etf)
    order[j], order[mid] = order[mid], order[j]
    fact_at = {slots[k]: order[k] for k in range(len(slots))}
    per_article = max(4, n_clauses // len(ARTICLE_TITLES) + 1)
    out = ["# Master Services Agreement\n\n" if markdown else "MASTER SERVICES AGREEMENT\n\n",
           "This Master Services Agreement is entered into by Northwind Analytics B.V. (\"Provider\") and "
           "Contoso Retail GmbH (\"Customer\"), each a \"Party\" and together the \"Parties\".\n\n"]
    offset = sum(len(s) for s in out)
    where = {}
    article = 0
    for c in range(n_clauses):
        if c % per_article == 0:
            article += 1
            title = ARTICLE_TITLES[(article - 1) % len(ARTICLE_TITLES)]
            s = f"## Article {article}. {title}\n\n" if markdown else f"ARTICLE {article}. {title.upper()}\n\n"
            out.append(s)
            offset += len(s)
        num = f"{article}.{c % per_article + 1}"
        if c in fact_at:
            head, body, q, a = FACTS[fact_at[c]]
            s = f"{num} {head}. {body} {filler(rng)}\n\n"
            where[fact_at[c]] = (offset, offset + len(s) - 2, num)
        else:
            s = f"{num} {rng.choice(HEADS)}. {filler(rng)}\n\n"
        out.append(s)
        offset += len(s)
    out.append("IN WITNESS WHEREOF, the Parties have executed this Agreement by their duly authorized representatives.\n")
    if questions_out:
        with open(questions_out, "w") as f:
            picks = [i for i in range(len(FACTS)) if FACTS[i][0] != "Renewal"][:20]
            for n, i in enumerate(picks):
                head, body, q, a = FACTS[i]
                start, end, num = where[i]
                f.write(json.dumps({"id": f"q{n + 1:02d}", "question": q, "expect": a, "clause": num,
                                    "start": start, "end": end}) + "\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# (c) filter records: support messages, some asking for a refund

NAMES = ["Maria K.", "Tom B.", "Aisha R.", "Lukas M.", "Chen W.", "Sofia P.", "Omar H.", "Emma L.", "Jonas F.", "Priya S.",
         "Diego A.", "Hannah V.", "Yuki T.", "Noah D.", "Elif Y.", "Mateo G."]
PRODUCTS = ["headphones", "coffee grinder", "running shoes", "desk lamp", "phone case", "backpack", "blender", "monitor",
            "keyboard", "winter jacket", "water bottle", "yoga mat", "smart watch", "kettle", "office chair"]
REFUND = [
    "I want a refund for the {p}, it stopped working after two days.",
    "Please give me my money back for order {o}, the {p} arrived broken.",
    "The {p} is not what was advertised. I would like a full refund.",
    "Can I get a refund? I returned the {p} last week and have heard nothing.",
    "I was charged for a {p} I never received, please refund the payment.",
    "Requesting a refund for order {o}: the {p} is the wrong size and I do not want an exchange.",
    "The {p} broke the first time I used it. Refund please, not a replacement.",
    "I cancelled order {o} within the 14 days, when will I get my money back?",
    "Please reimburse me for the {p}; it was damaged in shipping.",
    "I'd like to return the {p} for a refund to my credit card.",
]
OTHER = [
    "Where is my order {o}? The tracking page has not changed for a week.",
    "How do I reset my password? The email never arrives.",
    "Do you ship the {p} to Norway?",
    "The {p} is great, thank you for the fast delivery!",
    "Can I change the delivery address for order {o}?",
    "Is the {p} available in black?",
    "I would like to exchange the {p} for a larger size.",
    "My discount code does not work at checkout.",
    "Thanks, the refund for my last order arrived, everything is fine now.",
    "How long is the warranty on the {p}?",
    "Please update the billing address on my account.",
    "The invoice for order {o} shows the wrong company name, can you send a corrected one?",
    "Do you offer gift wrapping for the {p}?",
    "I love the {p}, can I buy a second one with the same discount?",
    "Your app crashes when I open my order history.",
    "The {p} arrived a day early, great service.",
    "Can I pay the {p} in installments?",
    "How do I unsubscribe from the newsletter?",
    "I need a replacement charger for the {p}, not a refund.",
    "Why was my card charged twice? One charge disappeared the next day, so it is fine, just curious.",
]


def records(rng, n, labels_out=None):
    out, labels = [], []
    for i in range(n):
        yes = rng.random() < 0.1
        t = rng.choice(REFUND if yes else OTHER)
        msg = t.format(p=rng.choice(PRODUCTS), o=f"#{rng.randint(100000, 999999)}")
        day = rng.randint(1, 28)
        out.append(f"ticket {10000 + i} [2026-03-{day:02d}] {rng.choice(NAMES)}: {msg}\n")
        labels.append("1" if yes else "0")
    if labels_out:
        with open(labels_out, "w") as f:
            f.write("\n".join(labels) + "\n")
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="kind", required=True)
    a = sub.add_parser("logs")
    a.add_argument("--lines", type=int, default=10000)
    a.add_argument("--incident", help="write the incident's byte range and cause (JSON) here")
    b = sub.add_parser("contract")
    b.add_argument("--tokens", type=int, default=64000, help="approximate size in tokens")
    b.add_argument("--questions", help="write 20 questions (JSONL, with expected answers and clause byte ranges) here")
    b.add_argument("--markdown", action="store_true", help="Markdown headings (# title, ## Article n) for summarize --sections")
    c = sub.add_parser("records")
    c.add_argument("--lines", type=int, default=10000)
    c.add_argument("--labels", help="write the ground truth (one 0/1 per line) here")
    for p in (a, b, c):
        p.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    if args.kind == "logs":
        text = logs(rng, args.lines, args.incident)
    elif args.kind == "contract":
        text = contract(rng, args.tokens, args.questions, args.markdown)
    else:
        text = records(rng, args.lines, args.labels)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
