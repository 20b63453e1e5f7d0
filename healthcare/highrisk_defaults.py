"""The high-risk rules every Healthcare organisation starts with (docs/high-risk.md).

Each rule is ``(name, category, pattern, scope, action)``, the shape the data plane
carries (``KeyRecord.high_risk_rules``). They all flag and none blocks: what an
organisation blocks is its own decision. Patterns are either terms separated by ``|``
(matched as whole words, any whitespace between words, any case, an apostrophe also as a
typographic one) or, when they use any other regular-expression syntax, RE2 regular
expressions (``healthcare.highrisk``).

They aim at the questions and answers where a model would be deciding something clinical:
how much of a drug, what someone has, how urgent it is. Broad on purpose (a flag costs
little), yet written so that everyday text ("twice a day", "an emergency exit", "do I have
to", "200 g of flour") does not match; the tests hold both sides.
"""

from __future__ import annotations

from typing import Final

# Units a dose is given in; grams and millilitres are left out (recipes use them too).
_DOSE_UNITS = (
    r"mg|mgs|mcg|µg|ug|micrograms?|milligrams?|iu|i\.u\.|international\s+units?|mmol|meq"
    r"|units?\s+of\s+(?:insulin|heparin)"
)

# Conditions a "do I have …" question names: suffixes of disease names, and common ones.
_CONDITIONS = (
    r"\w*(?:itis|omas?|a?emia|osis|pathy|algia)|cancer|tumou?r|diabetes|infection|disease"
    r"|disorder|syndrome|(?:a\s+)?condition|covid(?:-19)?|flu|hiv|stds?|stis?|adhd|autism"
    r"|depression|dementia|(?:a\s+)?stroke|(?:a\s+)?heart\s+attack|concussion|fracture|sepsis"
    r"|allerg(?:y|ies)|pneumonia|lupus|shingles|measles|strep(?:\s+throat)?|uti"
)

# "stroke" as a noun of its own: not followed by "of" ("a stroke of luck").
_STROKE = (
    r"(?:mini[-\s]?)?stroke"
    r"(?:\s*(?:[^\w\s]|$)|\s+(?:[a-np-z0-9_]\w*|o[a-eg-z0-9_]\w*|o\b|of\w+))"
)

DEFAULT_RULES: Final[tuple[tuple[str, str, str, str, str], ...]] = (
    # --- dosage ---------------------------------------------------------------------------
    (
        "Dosage: weight- or surface-based dose",
        "dosage",
        r"\b(?:mg|mcg|ug|ml|units?|iu|mmol|meq)\s*(?:/|per|each)\s*"
        r"(?:kg|kilo(?:gram)?s?|m2|m²|square\s+met(?:er|re)s?|body\s+weight)"
        r"|\bg\s*(?:/|per)\s*(?:kg|kilo(?:gram)?s?)\b|µg\s*(?:/|per)\s*kg",
        "both",
        "flag",
    ),
    (
        "Dosage: amount of a drug",
        "dosage",
        rf"\b\d+(?:[.,]\d+)?\s*(?:{_DOSE_UNITS})(?:\W|$)",
        "both",
        "flag",
    ),
    (
        "Dosage: dosing instructions",
        "dosage",
        r"\bdos(?:age|ages|ing)\b"
        r"|\bhow\s+(?:much|many)\s+(?:\w+\s+){0,4}?(?:should|can|could|do|must|may)\s+"
        r"(?:i|we|you|he|she|they|my\s+\w+)\s+(?:take|give|administer|inject)\b"
        r"|\bwhat(?:\s+is|['\x{2019}]s)?\s+(?:the\s+|a\s+)?(?:(?:right|correct|usual|recommended"
        r"|normal|safe|starting|maintenance|pa?ediatric|adult|daily)\s+)?dose\b"
        r"|\b(?:loading|missed|double|booster|next|starting|maintenance)\s+dose\b"
        r"|\bmiss(?:ed)?\s+a\s+dose\b|\btitrat(?:e|ed|ing|ion)\b"
        r"|\b(?:increase|decrease|reduce|lower|raise|adjust|change|skip|split|halve)\s+"
        r"(?:my|his|her|their|the)\s+(?:\w+\s+)?(?:dose|medication|meds|insulin|prescription)\b"
        r"|\bq\d{1,2}h\b|\bp\.?r\.?n\.?(?:\W|$)",
        "both",
        "flag",
    ),
    (
        "Dosage: overdose and maximum dose",
        "dosage",
        "overdose|overdosed|overdosing|overdoses|maximum dose|max dose|maximum daily dose"
        "|highest dose|highest safe dose|lethal dose|toxic dose|fatal dose|too many pills"
        "|too much medication|double the dose|doubled my dose|exceed the dose",
        "both",
        "flag",
    ),
    # --- diagnosis ------------------------------------------------------------------------
    (
        "Diagnosis: differential or diagnosis asked for",
        "diagnosis",
        r"\bdifferential\s+(?:diagnos[ie]s|dx)\b|\bddx\b"
        r"|\bdiagnos(?:e|ing)\s+(?:me|my|him|her|them|us|this\s+(?:rash|lump|pain|symptom)"
        r"|the\s+patient|a\s+patient|patients?)\b"
        r"|\b(?:my|his|her|their|a|the|likely|probable|possible|working|clinical)"
        r"\s+diagnosis\b"
        r"|\bwhat(?:\s+is|['\x{2019}]s)\s+wrong\s+with\s+(?:me|my|him|her|them|the\s+patient)\b"
        r"|\bwhat\s+(?:condition|illness|disease|infection|disorder)\s+(?:do|does|could|might"
        r"|would)\b|\b(?:based\s+on|given)\s+(?:these|my|his|her|the(?:se)?\s+patient'?s?)\s+"
        r"symptoms\b",
        "both",
        "flag",
    ),
    (
        "Diagnosis: do I have …",
        "diagnosis",
        r"\b(?:do|could|might|can|would)\s+(?:you\s+think\s+)?(?:i|he|she|they|we|my\s+\w+"
        r"|the\s+patient)\s+"
        r"(?:have|be\s+having|have\s+got|be\s+getting)\s+(?:an?\s+|the\s+|some\s+)?"
        rf"(?:\w+\s+){{0,2}}?(?:{_CONDITIONS})\b"
        rf"|\bis\s+(?:it|this|that)\s+(?:an?\s+|the\s+)?(?:{_CONDITIONS})\b",
        "request",
        "flag",
    ),
    (
        "Diagnosis: reading results",
        "diagnosis",
        r"\b(?:interpret|read|explain|analy[sz]e|review|look\s+at)\s+(?:my|these|this|the|his"
        r"|her|their|our)\s+(?:\w+\s+){0,2}?(?:(?:lab|laboratory|blood|biopsy|pathology|scan"
        r"|mri|ct|x-?ray|ultrasound|urine|cholesterol|thyroid|liver|kidney|psa|a1c|hba1c)\s+"
        r"(?:test\s+|panel\s+)?results?|labs|bloods|blood\s+work|blood\s+tests?|x-?rays?|mri"
        r"|ct\s+scan|ecg|ekg|biopsy|mammogram|ultrasound|pathology\s+report)\b"
        r"|\b(?:are|is)\s+(?:my|his|her)\s+(?:\w+\s+){0,2}?(?:results?|levels?|labs|counts?)"
        r"\s+(?:normal|abnormal|too\s+high|too\s+low|dangerous)\b"
        r"|\bis\s+(?:this|it|my|the)\s+(?:\w+\s+)?(?:cancerous|malignant|fractured)\b"
        r"|\bis\s+(?:my|his|her)\s+(?:arm|leg|wrist|ankle|finger|toe|nose|rib|foot|hand"
        r"|collarbone|hip)\s+broken\b",
        "both",
        "flag",
    ),
    # --- triage ---------------------------------------------------------------------------
    (
        "Triage: chest pain, breathing, collapse",
        "triage",
        "chest pain|chest pains|chest tightness|tightness in my chest|pain in my chest"
        "|crushing chest|heart attack|can't breathe|cannot breathe"
        "|can not breathe|difficulty breathing|trouble breathing|struggling to breathe"
        "|shortness of breath|short of breath|not breathing|stopped breathing|turning blue"
        "|passed out|fainted|fainting|unconscious|unresponsive|anaphylaxis|anaphylactic"
        "|throat is closing|throat closing|severe bleeding|won't stop bleeding"
        "|coughing up blood|vomiting blood|having a seizure"
        "|had a seizure|has a seizure|seizures|convulsing|convulsions",
        "both",
        "flag",
    ),
    (
        "Triage: stroke symptoms",
        "triage",
        rf"\b(?:having|had|has|have|is|am|are)\s+(?:an?\s+)?{_STROKE}"
        r"|\bstroke\s+(?:symptoms?|signs?|warning)\b|\bsigns?\s+of\s+(?:an?\s+)?stroke\b"
        r"|\btransient\s+isch(?:a)?emic\s+attack\b|\bface\s+(?:is\s+)?droop\w*"
        r"|\bfacial\s+droop\w*|\bslurred\s+speech\b|\bslurring\s+(?:\w+\s+)?words\b"
        r"|\bsudden(?:ly)?\s+(?:\w+\s+)?(?:numbness|numb|weakness|weak|confusion|confused"
        r"|vision\s+loss|loss\s+of\s+vision|can't\s+speak|cannot\s+speak)\b"
        r"|\bnumb(?:ness)?\s+(?:on|in)\s+one\s+side\b|\bworst\s+headache\b"
        r"|\bthunderclap\s+headache\b",
        "both",
        "flag",
    ),
    (
        "Triage: suicidal ideation and self-harm",
        "triage",
        "suicidal|suicide|kill myself|killing myself|end my life|ending my life"
        "|take my own life|want to die|wanna die|better off dead|no reason to live"
        "|self-harm|self harm|self-harming|harm myself|hurt myself|hurting myself"
        "|cutting myself|overdose on purpose",
        "both",
        "flag",
    ),
    (
        "Triage: emergency care",
        "triage",
        r"\b(?:should|do|must|can)\s+(?:i|we|he|she|they|you)\s+(?:\w+\s+(?:to\s+)?)?(?:go|get|head"
        r"|take\s+\w+|bring\s+\w+|rush\s+\w+)\s+(?:straight\s+)?to\s+(?:the\s+|an?\s+)?(?:er"
        r"|a&e|a\s+and\s+e|emergency|hospital|urgent\s+care|ed)\b"
        r"|\b(?:call|dial|ring)\s+(?:911|999|112|000|an\s+ambulance|for\s+an\s+ambulance)"
        r"|\bneed\s+(?:an\s+)?ambulance\b|\bis\s+(?:this|it|that)\s+an?\s+(?:medical\s+)?"
        r"emergency\b|\bmedical\s+emergency\b|\bemergency\s+(?:room|department|care|services)\b"
        r"|\burgent\s+care\b|\blife[-\s]threatening\b",
        "both",
        "flag",
    ),
    (
        "Triage: poisoning and ingestion",
        "triage",
        r"\b(?:swallowed|ingested|drank|ate|eaten|chewed)\s+(?:a\s+|an\s+|some\s+|the\s+|my\s+)?"
        r"(?:\w+\s+){0,2}?(?:bleach|button\s+batter(?:y|ies)|batter(?:y|ies)|detergent"
        r"|laundry\s+pods?|antifreeze|pills|tablets|medication|medicine|poison|chemicals?"
        r"|rat\s+poison|weed\s+killer|pesticide|wild\s+mushrooms?)\b"
        r"|\bpoison(?:ed|ing)\b|\bpoison\s+control\b",
        "both",
        "flag",
    ),
)
