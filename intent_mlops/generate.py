"""The project's default data set: a customer-service intent corpus generated from templates.

Each intent has several phrasings (questions, statements, imperatives, indirect requests) with
slots filled from shared vocabularies (products, order words, time spans), wrapped in
conversational openers and closers, then perturbed with typos. Intents deliberately share
vocabulary ("order", "refund", "card", "account") and a small fraction of labels is flipped,
so a fine-tuned model lands clearly below 100 %. Output depends only on the seed: the file's
bytes (and so its DVC hash) are identical on every machine.
"""

from __future__ import annotations

import random
import re

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


def _fill(template: str, rng: random.Random) -> str:
    text = re.sub(r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]), template)
    return re.sub(r"\s+", " ", text).strip()


def _utterance(template: str, rng: random.Random, typo_rate: float) -> str:
    core = _fill(template, rng)
    text = rng.choice(OPENERS) + rng.choice(PATTERNS).format(core=core) + rng.choice(CLOSERS)
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
