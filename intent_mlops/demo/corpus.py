"""The project's default data set: a customer-service intent corpus generated from templates.

Each intent has several phrasings (questions, statements, imperatives, indirect requests) with
slots filled from shared vocabularies (products, order words, time spans), wrapped in
conversational openers and closers, then perturbed with typos. Intents deliberately share
vocabulary ("order", "refund", "card", "account") and a small fraction of labels is flipped,
so a fine-tuned model lands clearly below 100 %. Output depends only on the seed: the file's
bytes (and so its DVC hash) are identical on every machine.

:func:`next_batch` simulates new labelled data arriving later: new phrasings of the same intents
plus one new intent per batch, never repeating a text of the default corpus or of another batch.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

SLOTS: dict[str, list[str]] = {
    "item": [
        "headphones",
        "jacket",
        "phone case",
        "laptop",
        "coffee maker",
        "running shoes",
        "blender",
        "desk lamp",
        "backpack",
        "smart watch",
        "sofa cushion",
        "book",
        "vacuum cleaner",
        "monitor",
        "keyboard",
        "dress",
        "kettle",
        "printer",
        "tablet",
        "charger",
        "mattress",
        "camera",
    ],
    "order": ["order", "package", "parcel", "purchase", "delivery", "shipment"],
    "num": ["#48213", "number 55102", "A-7731", "#90017", "ref 33120", "no. 61844", "#12009", ""],
    "days": ["two days", "a week", "10 days", "three weeks", "a month", "5 days", "yesterday"],
    "money": ["$20", "$49.99", "15 euros", "$120", "the full amount", "$7.50", "£30"],
    "pay": ["card", "credit card", "debit card", "paypal", "apple pay", "bank transfer", "visa"],
    "plan": ["premium", "basic", "family", "pro", "monthly", "annual", "student"],
    "place": ["new flat", "office", "parents' house", "work address", "new apartment", "PO box"],
    "channel": ["email", "text message", "app", "website", "phone"],
}

# intent -> phrasings. Slots in braces. Overlapping vocabulary across intents is intentional.
TEMPLATES: dict[str, list[str]] = {
    "track_order": [
        "where is my {order} {num}",
        "can you tell me where my {order} is",
        "i want to track my {order}",
        "what's the status of my {order} {num}",
        "has my {item} shipped yet",
        "tracking info for my {order} please",
        "how do i see where my {item} is",
        "my {order} says in transit, where is it now",
        "is my {order} out for delivery",
        "need the tracking number for the {item}",
    ],
    "delivery_delay": [
        "my {order} is late",
        "i ordered {days} ago and nothing arrived",
        "the {item} still hasn't arrived",
        "why is my {order} taking so long",
        "it's been {days} and my {order} is not here",
        "delivery was supposed to be {days} ago",
        "my {item} is delayed again",
        "the estimated delivery date passed and no {order}",
        "still waiting on my {item}",
        "how much longer will my {order} take",
    ],
    "cancel_order": [
        "cancel my {order} {num}",
        "i want to cancel the {item} i just bought",
        "please cancel my {order} before it ships",
        "can i still cancel my {order}",
        "i changed my mind about the {item}, cancel it",
        "stop my {order} {num}",
        "how do i cancel an {order}",
        "i ordered the wrong {item}, can you cancel it",
        "cancel the {order} i placed {days} ago",
        "don't send the {item}, cancel and refund me",
    ],
    "return_item": [
        "i want to return the {item}",
        "how do i send back my {item}",
        "can i return an {order} after {days}",
        "i need a return label for my {item}",
        "the {item} doesn't fit, i want to return it",
        "start a return for {order} {num}",
        "what is your return policy for the {item}",
        "i'd like to send the {item} back",
        "return the {item} i got {days} ago for a refund",
        "where do i drop off my return",
    ],
    "refund_status": [
        "where is my refund",
        "i returned the {item} {days} ago and got no refund",
        "when will i get my {money} back",
        "refund for {order} {num} hasn't come through",
        "status of my refund please",
        "how long do refunds take to reach my {pay}",
        "i was promised a refund of {money}",
        "my refund still isn't on my {pay}",
        "did you process my refund for the {item}",
        "still waiting for my money back",
    ],
    "damaged_item": [
        "my {item} arrived broken",
        "the {item} is damaged",
        "the box was crushed and the {item} is cracked",
        "received a faulty {item}",
        "my {order} came damaged",
        "the {item} stopped working after {days}",
        "there's a scratch on the {item} i got",
        "the {item} was broken when i opened the {order}",
        "the screen of the {item} is cracked",
        "my {item} is defective",
    ],
    "wrong_item": [
        "i got the wrong {item}",
        "you sent me the wrong {order}",
        "this is not the {item} i ordered",
        "received someone else's {order}",
        "the {order} has the wrong size",
        "i ordered a {item} but got something else",
        "wrong colour {item} in my {order}",
        "the item in {order} {num} is not what i bought",
        "there's a mix up with my {order}",
        "my {order} had a different {item} inside",
    ],
    "missing_item": [
        "an item is missing from my {order}",
        "my {order} arrived but the {item} wasn't in it",
        "only part of my {order} came",
        "the {item} is missing from the box",
        "i received {order} {num} but one thing is missing",
        "where is the rest of my {order}",
        "the {order} was marked delivered but i never got it",
        "half my {order} is missing",
        "my {item} wasn't included",
        "package came empty",
    ],
    "change_address": [
        "change the delivery address to my {place}",
        "i moved, update my shipping address",
        "can i send the {order} to my {place} instead",
        "wrong address on {order} {num}",
        "i need to change where my {item} is delivered",
        "update my address please",
        "ship it to my {place}",
        "how do i edit the address on my {order}",
        "deliver the {item} to a different address",
        "my address is wrong on the {order}",
    ],
    "payment_failed": [
        "my payment didn't go through",
        "my {pay} was declined",
        "i can't pay with {pay}",
        "checkout keeps failing",
        "the payment for my {item} failed",
        "why was my {pay} rejected",
        "error when paying for the {order}",
        "transaction failed but i have money on my {pay}",
        "can't complete my purchase, payment error",
        "it says payment declined for {money}",
    ],
    "double_charge": [
        "i was charged twice",
        "you charged my {pay} two times for the same {order}",
        "there are two charges of {money}",
        "duplicate charge on my {pay}",
        "i paid {money} twice for the {item}",
        "why did you bill me twice",
        "i see the same payment twice on my statement",
        "charged twice for {order} {num}",
        "double payment taken from my {pay}",
        "refund the extra charge of {money}",
    ],
    "update_payment": [
        "how do i update my {pay}",
        "i want to change my payment method to {pay}",
        "add a new {pay} to my account",
        "remove my old {pay}",
        "my {pay} expired, how do i change it",
        "update billing details",
        "switch my payment to {pay}",
        "can i pay with {pay} instead",
        "replace the {pay} on file",
        "change the card on my account",
    ],
    "apply_coupon": [
        "my discount code doesn't work",
        "how do i apply a coupon",
        "the promo code was rejected",
        "can i use a voucher on my {order}",
        "i forgot to add my coupon to the {order}",
        "where do i enter a discount code",
        "the coupon says expired but it's not",
        "can i get the discount on the {item}",
        "promo code for {money} off isn't applying",
        "apply my gift card to the {order}",
    ],
    "reset_password": [
        "i forgot my password",
        "reset my password please",
        "how do i change my password",
        "the password reset {channel} never came",
        "i can't remember my login password",
        "password reset link doesn't work",
        "send me a new password",
        "i need to reset my login",
        "change password on my account",
        "forgot password, can't sign in",
    ],
    "account_locked": [
        "my account is locked",
        "i'm locked out of my account",
        "it says my account is suspended",
        "too many login attempts and now i can't get in",
        "unlock my account",
        "why was my account blocked",
        "i can't log in, account disabled",
        "my account got frozen after i changed my password",
        "account locked after {days}",
        "i can't sign in, it says account locked",
    ],
    "change_email": [
        "change the email on my account",
        "update my email address",
        "i have a new email",
        "how do i change my login email",
        "i want notifications to a different email",
        "my email changed, update it",
        "switch my account email",
        "i can't access my old email",
        "edit my contact email",
        "password reset goes to my old email, update it",
    ],
    "delete_account": [
        "delete my account",
        "i want to close my account",
        "remove all my data",
        "how do i permanently delete my account",
        "close my account and erase my info",
        "i no longer want an account with you",
        "deactivate my account for good",
        "please delete my profile",
        "gdpr request to delete my data",
        "cancel my account entirely, not just the plan",
    ],
    "cancel_subscription": [
        "cancel my {plan} subscription",
        "i want to stop my {plan} membership",
        "how do i end my subscription",
        "stop renewing my {plan} plan",
        "don't charge me for the {plan} plan anymore",
        "unsubscribe me from {plan}",
        "turn off auto renewal",
        "i want to cancel my membership before it renews",
        "end my {plan} plan",
        "cancel the subscription, not my account",
    ],
    "upgrade_plan": [
        "upgrade me to {plan}",
        "i want the {plan} plan",
        "how do i switch to the {plan} subscription",
        "what does {plan} include",
        "move my account to {plan}",
        "change my plan to {plan}",
        "is {plan} worth it, i'd like to upgrade",
        "can i upgrade mid month",
        "switch from basic to {plan}",
        "get the {plan} membership",
    ],
    "request_invoice": [
        "i need an invoice for my {order}",
        "send me a receipt",
        "can i get a vat invoice",
        "where can i download my invoice",
        "receipt for {order} {num} please",
        "invoice for the {item} for my company",
        "email me the receipt for {money}",
        "i need a copy of my bill",
        "i lost my receipt for the {item}",
        "print invoice",
    ],
    "product_availability": [
        "is the {item} in stock",
        "when will the {item} be available again",
        "do you have the {item} in a larger size",
        "is the {item} sold out",
        "can i preorder the {item}",
        "do you sell {item}s",
        "will you restock the {item}",
        "notify me when the {item} is back",
        "is the {item} available in my area",
        "how many {item}s do you have",
    ],
    "warranty_claim": [
        "is my {item} under warranty",
        "i want to make a warranty claim for the {item}",
        "how long is the warranty on the {item}",
        "my {item} broke after {days}, is it covered",
        "warranty repair for my {item}",
        "can i get the {item} fixed under guarantee",
        "does the warranty cover water damage",
        "extend the warranty on my {item}",
        "the {item} is faulty, repair or refund under warranty",
        "claim warranty on {order} {num}",
    ],
    "speak_to_human": [
        "let me talk to a person",
        "i want to speak to an agent",
        "can i call someone",
        "get me a human",
        "connect me to customer service",
        "this bot isn't helping, real person please",
        "what is your phone number",
        "i need to talk to someone about my {order}",
        "transfer me to a manager",
        "live chat with an agent",
    ],
    "store_hours": [
        "what time do you open",
        "are you open on sunday",
        "store hours please",
        "when does the shop close today",
        "opening hours for the store near my {place}",
        "are you open on public holidays",
        "what are your business hours",
        "is the store open now",
        "what time does customer service close",
        "holiday opening times",
    ],
    "oos": [
        "what's the weather tomorrow",
        "tell me a joke",
        "who won the game last night",
        "how do i bake bread",
        "what is the capital of peru",
        "play some music",
        "set an alarm for 7",
        "translate hello into french",
        "what's 15 times 4",
        "recommend a movie",
        "how tall is mount everest",
        "book me a flight to rome",
    ],
}

OPENERS = [
    "",
    "",
    "",
    "",
    "hi, ",
    "hello, ",
    "hey ",
    "hi there. ",
    "good morning, ",
    "quick question: ",
    "excuse me, ",
    "um ",
    "sorry to bother you but ",
    "urgent: ",
    "hello team, ",
    "help! ",
]
CLOSERS = [
    "",
    "",
    "",
    "",
    "?",
    ".",
    " please",
    " thanks",
    " thank you",
    " asap",
    " please help",
    " thx",
    "!!",
    " any update?",
    " this is really frustrating",
    " cheers",
]
# paraphrase patterns applied to the core phrasing
PATTERNS = [
    "{core}",
    "{core}",
    "{core}",
    "can you help, {core}",
    "i need help: {core}",
    "{core}, what should i do",
    "{core} - what are my options",
    "not sure who to ask but {core}",
    "i was wondering, {core}",
    "{core}. can someone look into it",
]
KEYBOARD_NEIGHBOURS = "qwertyuiopasdfghjklzxcvbnm"


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # swap
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop
        return word[:i] + word[i + 1 :]
    if kind == 2:  # double
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice(KEYBOARD_NEIGHBOURS) + word[i + 1 :]


def _fill(template: str, rng: random.Random, slots: dict[str, list[str]] = SLOTS) -> str:
    text = re.sub(r"\{(\w+)\}", lambda m: rng.choice(slots[m.group(1)]), template)
    return re.sub(r"\s+", " ", text).strip()


def _utterance(
    template: str,
    rng: random.Random,
    typo_rate: float,
    patterns: list[str] = PATTERNS,
    slots: dict[str, list[str]] = SLOTS,
) -> str:
    core = _fill(template, rng, slots)
    text = rng.choice(OPENERS) + rng.choice(patterns).format(core=core) + rng.choice(CLOSERS)
    words = [_typo(w, rng) if rng.random() < typo_rate else w for w in text.split(" ")]
    text = " ".join(words)
    style = rng.random()
    if style < 0.35:
        text = text[:1].upper() + text[1:]
    elif style < 0.40:
        text = text.upper()
    return re.sub(r"\s+", " ", text).strip()


def generate(per_intent: int = 150, seed: int = 13, label_noise: float = 0.02, typo_rate: float = 0.04) -> pd.DataFrame:
    """Deterministic ``text,label`` frame with unique texts (one label per text)."""
    rng = random.Random(seed)
    labels = list(TEMPLATES)
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label in labels:
        templates = TEMPLATES[label]
        made, attempts = 0, 0
        while made < per_intent and attempts < per_intent * 50:
            attempts += 1
            text = _utterance(templates[attempts % len(templates)], rng, typo_rate)
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            rows.append((text, label))
            made += 1
    noisy = []
    for text, label in rows:
        if rng.random() < label_noise:
            label = rng.choice([x for x in labels if x != label])
        noisy.append((text, label))
    rng.shuffle(noisy)
    return pd.DataFrame(noisy, columns=["text", "label"])


# --- Next batches: "new labelled data arriving" ------------------------------------------------
# Batch b brings new phrasings of every base intent (BATCH_PHRASINGS[intent][b - 1], plus the base
# templates wrapped in the batch's own paraphrase patterns) and exactly one new intent. Slot
# values and patterns listed here are reserved for batches: ``generate`` never uses them.


@dataclass(frozen=True)
class Batch:
    new_intent: str
    new_templates: tuple[str, ...]  # phrasings of the new intent
    patterns: tuple[str, ...]  # paraphrase wrappers only this batch uses
    slots: dict[str, list[str]] = field(default_factory=dict)  # extra slot values (and new slots)


BATCHES: dict[int, Batch] = {
    1: Batch(
        new_intent="report_lost_card",
        new_templates=(
            "i lost my {card}",
            "my {card} was stolen",
            "please block my {card}",
            "i can't find my {card}, freeze it",
            "someone took my wallet with my {card} in it",
            "report my {card} as lost",
            "how do i cancel a lost {card}",
            "my {card} went missing {days} ago",
            "freeze my {card} right now",
            "i think my {card} was stolen, stop all payments on it",
            "i need a replacement for my lost {card}",
            "my {card} is gone, what do i do",
            "block the {card} ending in {digits}",
            "i dropped my {card} somewhere, can you disable it",
        ),
        patterns=(
            "{core}, can you sort this out",
            "so basically {core}",
            "{core} - can anyone help me",
            "hoping you can help: {core}",
            "{core}. i'd appreciate a quick reply",
            "writing again because {core}",
        ),
        slots={
            "card": ["card", "credit card", "debit card", "store card", "bank card", "visa card", "mastercard"],
            "digits": ["4821", "0937", "1156", "7702", "3390"],
            "item": ["air fryer", "hoodie", "gaming mouse", "yoga mat"],
            "num": ["#70321", "ref 81190"],
            "money": ["$64", "22 euros"],
            "pay": ["mastercard", "google pay"],
            "days": ["four days", "a fortnight"],
            "plan": ["business"],
            "place": ["holiday home"],
        },
    ),
    2: Batch(
        new_intent="loyalty_points",
        new_templates=(
            "how many reward points do i have",
            "my points for {order} {num} were not added",
            "can i pay with my loyalty points",
            "when do my points expire",
            "i didn't get any points for the {item}",
            "check my loyalty balance",
            "how do i redeem my points",
            "my reward points disappeared",
            "use my points to pay for the {item}",
            "how many points do i earn when i spend {money}",
            "how do i join the loyalty program",
            "my points balance is wrong",
            "turn my points into a voucher",
            "i bought the {item} {days} ago and my points still aren't there",
        ),
        patterns=(
            "{core}, how do i fix this",
            "following up: {core}",
            "{core}. is that possible",
            "my question is, {core}",
            "{core} - please advise",
            "just to let you know, {core}",
        ),
        slots={
            "item": ["toaster", "winter boots", "bluetooth speaker", "bike helmet"],
            "num": ["#66014", "ref 20417"],
            "money": ["$35", "80 euros"],
            "pay": ["amex", "store credit"],
            "days": ["six days", "last week"],
            "plan": ["family plus"],
            "place": ["friend's house"],
        },
    ),
    3: Batch(
        new_intent="price_match",
        new_templates=(
            "i found the {item} cheaper elsewhere",
            "can you match the price of the {item}",
            "the {item} is {money} less at another store",
            "do you price match",
            "the price of the {item} dropped {days} after i bought it",
            "refund the price difference on the {item}",
            "your competitor sells the {item} for {money}",
            "can i get the sale price on my {order}",
            "the {item} went on sale right after my {order}",
            "will you beat a lower price for the {item}",
            "price match request for {order} {num}",
            "i paid full price and now the {item} is discounted",
            "another shop has the {item} for less, can you do the same",
        ),
        patterns=(
            "{core}, please get back to me",
            "one more thing, {core}",
            "{core} - who can i talk to about it",
            "i'm contacting you because {core}",
            "{core}. need this resolved",
            "hey support, {core}",
        ),
        slots={
            "item": ["electric toothbrush", "router", "suitcase", "wall clock"],
            "num": ["#31875", "ref 47702"],
            "money": ["$12", "40 pounds"],
            "pay": ["klarna", "gift card"],
            "days": ["two weeks", "the day before"],
            "plan": ["premium plus"],
            "place": ["cottage"],
        },
    ),
}

# base intent -> (phrasings of batch 1, of batch 2, of batch 3): each batch's new ways of saying it
BATCH_PHRASINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "track_order": (
        ("any news on where my {order} is", "can you locate {order} {num} for me"),
        ("which courier has my {item}", "the tracking page for my {order} won't load"),
        ("when will the {item} get to me, i want to follow it", "give me an update on the location of my {order}"),
    ),
    "delivery_delay": (
        ("my {order} was due {days} ago", "the courier keeps pushing back my {order}"),
        ("the {item} missed the promised delivery date", "why hasn't my {order} moved in {days}"),
        ("my {order} is overdue", "the {item} should have been here by now"),
    ),
    "cancel_order": (
        ("please call off my {order} {num}", "i no longer want the {item}, stop the {order}"),
        ("undo my {order} from {days} ago", "can you scrap the {item} before it is dispatched"),
        ("i placed the {order} by accident, cancel it", "withdraw my {order} for the {item}"),
    ),
    "return_item": (
        ("how do i ship the {item} back to you", "where do i send the {item} to get my money back"),
        ("can i bring the {item} back to a store", "the {item} isn't what i expected, i'm sending it back"),
        ("book a courier to collect my return of the {item}", "what's the deadline to send back the {item}"),
    ),
    "refund_status": (
        ("any update on the money you owe me for the {item}", "the refund of {money} still isn't on my {pay}"),
        ("you approved my refund {days} ago but nothing yet", "has my refund been sent"),
        ("how do i check my refund progress", "when does the {money} refund land on my {pay}"),
    ),
    "damaged_item": (
        ("the {item} came with a dent", "my {item} is leaking out of the box"),
        ("the {item} arrived in pieces", "the packaging was torn and the {item} is scratched"),
        ("parts of the {item} snapped off in transit", "my {item} was smashed during delivery"),
    ),
    "wrong_item": (
        ("the {item} you sent is a different model", "this {order} isn't mine, the contents are wrong"),
        ("i was sent a {item} instead of what i paid for", "the label says {item} but something else is inside"),
        ("got a totally different product in {order} {num}", "wrong product delivered instead of my {item}"),
    ),
    "missing_item": (
        ("the {order} is incomplete, the {item} is not there", "the box arrived without the {item}"),
        ("i'm short one item in {order} {num}", "the cable for the {item} was not in the box"),
        ("tracking says delivered but my doorstep was empty", "an accessory is missing from the {item}"),
    ),
    "change_address": (
        ("please redirect my {order} to my {place}", "the postcode on my {order} is wrong"),
        ("i'm not home, can the {item} go to my {place}", "fix the street name on my delivery address"),
        ("reroute {order} {num} to another address", "use my {place} as the new shipping address"),
    ),
    "payment_failed": (
        ("my {pay} keeps getting refused at checkout", "the bank declined the payment for the {item}"),
        ("payment error when buying the {item}", "my {pay} won't go through for {money}"),
        ("the order won't complete, it says payment unsuccessful", "why does my {pay} fail every time i pay"),
    ),
    "double_charge": (
        ("i see {money} taken twice from my {pay}", "you billed me double for {order} {num}"),
        ("two identical payments for the {item}", "my statement shows a duplicate {money} charge"),
        ("the same {order} was charged two times", "please reverse the second payment of {money}"),
    ),
    "update_payment": (
        ("set {pay} as my default payment", "my card number changed, update it"),
        ("put a different {pay} on my account", "how do i delete the {pay} saved on my profile"),
        ("i got a new {pay}, how do i save it", "change how i pay for future orders"),
    ),
    "apply_coupon": (
        ("the voucher code isn't taking {money} off", "can i still use my coupon after ordering the {item}"),
        ("where's the box to type a promo code", "my discount wasn't applied to {order} {num}"),
        ("the {money} off code says invalid", "can i stack two coupons on the {item}"),
    ),
    "reset_password": (
        ("i need a new password, the old one doesn't work", "the {channel} with the reset code never arrived"),
        ("help me recover my password", "how can i set a new password for my login"),
        ("my password isn't accepted, i want to reset it", "send a password reset {channel}"),
    ),
    "account_locked": (
        ("my account has been blocked for {days}", "the app says my account is locked, please unlock it"),
        ("i've been locked out after entering the wrong code", "why can't i get into my account, it says restricted"),
        ("my login is blocked", "please lift the lock on my account"),
    ),
    "change_email": (
        ("replace the email address on my profile", "i want my receipts sent to a new email"),
        ("my account email is outdated", "how can i switch the email i log in with"),
        ("please use my new email for my account", "update the email you send order updates to"),
    ),
    "delete_account": (
        ("erase my account and everything you store about me", "i want my profile removed completely"),
        ("how do i shut down my account", "please wipe my personal data"),
        ("remove my account from your system", "i'd like to terminate my account permanently"),
    ),
    "cancel_subscription": (
        ("i don't want the {plan} plan to renew", "stop my {plan} subscription at the end of the month"),
        ("how do i opt out of the {plan} membership", "end my recurring {plan} payments"),
        ("cancel {plan} before the next billing date", "i want to quit my {plan} subscription"),
    ),
    "upgrade_plan": (
        ("i'd like more features, move me to {plan}", "how much is it to go up to {plan}"),
        ("switch my membership to the {plan} tier", "can i get {plan} instead of my current plan"),
        ("upgrade my subscription to {plan} today", "what's the price difference for {plan}"),
    ),
    "request_invoice": (
        ("i need a tax invoice for {order} {num}", "can you resend the receipt for the {item}"),
        ("where do i find the invoice for my {order}", "please send a pdf invoice for {money}"),
        ("my accountant needs the invoice for the {item}", "invoice with my company name for {order} {num}"),
    ),
    "product_availability": (
        ("is the {item} coming back in stock soon", "can i still buy the {item}"),
        ("which stores have the {item}", "is the {item} available online"),
        ("when is the next delivery of the {item} to your warehouse", "do you carry the {item} in black"),
    ),
    "warranty_claim": (
        ("does my guarantee cover the broken {item}", "how do i claim on the {item} warranty"),
        ("the {item} failed after {days}, can i get it repaired for free", "what does the warranty on my {item} cover"),
        ("i'd like a replacement under warranty for the {item}", "my {item} is under guarantee and stopped working"),
    ),
    "speak_to_human": (
        ("can a real agent call me back", "i'd rather talk to a human about my {order}"),
        ("please put me through to support staff", "is there someone i can speak with"),
        ("stop the bot, i need an actual person", "how do i reach a customer service agent"),
    ),
    "store_hours": (
        ("until when are you open tonight", "is the shop open on saturday morning"),
        ("what are the opening times this weekend", "when does the store near my {place} open"),
        ("are you closed on christmas day", "what time does the store open tomorrow"),
    ),
    "oos": (
        ("what's the time in tokyo", "write me a poem about cats"),
        ("how far away is the moon", "what should i cook for dinner"),
        ("who painted the mona lisa", "how do i learn to swim"),
    ),
}


def _key(text: str) -> str:
    """The normalised text (as ``intent_mlops.data.io.normalise_text``) used for overlap checks."""
    return " ".join(text.lower().split())


@lru_cache(maxsize=1)
def _default_keys() -> frozenset[str]:
    return frozenset(_key(t) for t in generate()["text"])


def _batch_rows(batch: int, per_intent: int, seed: int, typo_rate: float, taken: set[str]) -> list[tuple[str, str]]:
    spec = BATCHES[batch]
    rng = random.Random(f"intent-mlops-batch:{batch}:{seed}")
    slots = {name: SLOTS.get(name, []) + spec.slots.get(name, []) for name in {**SLOTS, **spec.slots}}
    own_patterns = list(spec.patterns)
    any_pattern = PATTERNS + own_patterns
    seen = set(taken)
    rows: list[tuple[str, str]] = []
    for label in [*TEMPLATES, spec.new_intent]:
        if label == spec.new_intent:
            choices = [(t, any_pattern) for t in spec.new_templates]
        else:
            # alternate: a new phrasing in any wrapper / a base phrasing in a wrapper only this batch uses
            new = [(t, any_pattern) for t in BATCH_PHRASINGS[label][batch - 1]]
            old = [(t, own_patterns) for t in TEMPLATES[label]]
            choices = [pair for i in range(max(len(new), len(old))) for pair in (new[i % len(new)], old[i])]
        made, attempts = 0, 0
        while made < per_intent and attempts < per_intent * 50:
            attempts += 1
            template, patterns = choices[attempts % len(choices)]
            text = _utterance(template, rng, typo_rate, patterns, slots)
            if _key(text) in seen:
                continue
            seen.add(_key(text))
            rows.append((text, label))
            made += 1
    return rows


def next_batch(
    batch: int, per_intent: int = 30, seed: int = 13, label_noise: float = 0.0, typo_rate: float = 0.04
) -> pd.DataFrame:
    """Batch ``batch`` (1, 2, ... up to ``max(BATCHES)``) of new labelled data for the default corpus.

    ``per_intent`` new utterances of every base intent (new phrasings, new slot values, new
    wrappers) plus ``per_intent`` of one intent the base corpus lacks (``BATCHES[batch].new_intent``).
    No normalised text occurs in ``generate()``'s default output or, for the same arguments, in
    another batch (earlier batches are generated to exclude them; later ones exclude this one).
    Deterministic by ``(batch, per_intent, seed, label_noise, typo_rate)``; ``text,label`` like
    :func:`generate`, ready for ``intent-mlops data add``.
    """
    if batch not in BATCHES:
        raise ValueError(f"batch must be one of {sorted(BATCHES)}, got {batch}")
    taken = set(_default_keys())
    for earlier in range(1, batch):
        taken.update(_key(text) for text, _ in _batch_rows(earlier, per_intent, seed, typo_rate, taken))
    rows = _batch_rows(batch, per_intent, seed, typo_rate, taken)
    labels = [*TEMPLATES, BATCHES[batch].new_intent]
    rng = random.Random(f"intent-mlops-batch-noise:{batch}:{seed}")
    noisy = []
    for text, label in rows:
        if rng.random() < label_noise:
            label = rng.choice([x for x in labels if x != label])
        noisy.append((text, label))
    rng.shuffle(noisy)
    return pd.DataFrame(noisy, columns=["text", "label"])
