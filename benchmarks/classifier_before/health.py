"""Health data: medical record numbers and health conditions / medication in a personal or clinical context."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

from classifier_before.findings import Doc, Finding, before_ok, register_cues

_MRN_WORDS = [
    "mrn",
    "medical record",
    "medical record number",
    "medical record no",
    "medical record no.",
    "medical record #",
    "patient id",
    "patient number",
    "patient no",
    "patient no.",
    "chart no",
    "chart no.",
    "chart number",
    "health card no",
    "health card number",
    "health insurance number",
    "nhs no",
    "nhs no.",
    "nhs number",
]
register_cues("mrn", _MRN_WORDS)
# Linear time: every run of whitespace is bounded and the optional separator owns the run after it, so a long
# run of spaces after a cue word cannot be split between two quantifiers in every possible way (issue 19).
_MRN_TAIL = re.compile(r"\s{0,8}(?:[:#]\s{0,8})?([A-Za-z]{0,4}[\- ]?\d[\d\- ]{4,14}\d)")
_CONDITION_WORDS = [
    w.replace("_", " ")
    for w in """
abortion adderall addiction adhd aids alprazolam alzheimer's alzheimers amoxicillin anorexia antidepressant
antidepressants anxiety_disorder arrhythmia arthritis asthma atorvastatin atrial_fibrillation autism biopsy
bipolar bipolar_disorder bulimia buprenorphine cancer carcinoma celiac_disease chemo chemotherapy chlamydia
chronic_kidney_disease copd covid-19 crohn's_disease crohns_disease ct_scan cystic_fibrosis dementia
depression diabetes diabetic dialysis eating_disorder epilepsy fibromyalgia fluoxetine gonorrhea
gonorrhoea hba1c heart_failure hepatitis hepatitis_a hepatitis_b hepatitis_c herpes
high_blood_pressure high_cholesterol hiv hypertension hypothyroidism insulin leukaemia leukemia levothyroxine
lisinopril long_covid lupus lymphoma major_depressive_disorder mammogram melanoma mental_health metformin
methadone migraine migraines miscarriage mri_scan multiple_sclerosis obesity opioid_use_disorder overdose
oxycodone panic_disorder parkinson's parkinsons pregnancy pregnant prozac psychiatric ptsd radiotherapy
rehab schizophrenia seizure seizures self-harm sertraline sickle_cell stroke suicidal syphilis transplant
tuberculosis tumor tumour ulcerative_colitis warfarin xanax
abilify adalimumab alcoholism amlodipine anaemia anemia angina antiretroviral antiretrovirals aripiprazole ativan
biktarvy borderline_personality_disorder bupropion cerebral_palsy cialis cirrhosis citalopram clonazepam concerta
concussion diazepam down_syndrome duloxetine endometriosis erectile_dysfunction escitalopram estradiol fentanyl
gabapentin gender_dysphoria glaucoma haemophilia hemophilia heart_attack hiv-positive humira huntington's
hydrocodone hyperthyroidism infertility ivf kidney_failure klonopin lamotrigine lexapro lithium lorazepam losartan
lyrica methotrexate methylphenidate metoprolol modafinil morphine mounjaro myocardial_infarction naloxone
narcolepsy olanzapine osteoporosis ozempic paroxetine percocet pneumonia postpartum_depression prednisone pregabalin
psoriasis quetiapine renal_failure risperidone ritalin schizoaffective semaglutide sepsis seroquel sildenafil
sleep_apnea spironolactone substance_abuse suboxone thalassemia tirzepatide tourette's tramadol truvada valium
valproate venlafaxine viagra vicodin vyvanse wegovy wellbutrin zoloft
diabète diabete diabético diabética diabetico diabetica diabétique diabetiker diabetikerin séropositif séropositive
seropositivo seropositiva hiv-positiv vih sida krebs cáncer cancro câncer tumeur tumore leucemia leucémie leukämie
dépression depresión depressione depressão esquizofrenia schizophrénie schizophrenie schizofrenia epilepsia
épilepsie epilepsie epilessia embarazada enceinte schwanger incinta grávida gravida asma asthme alzheimer parkinson
hipertensión hypertonie ipertensione hipertensão ansiedad anxiété angststörung trastorno_bipolar trouble_bipolaire
disturbo_bipolare bipolare insulina insuline quimioterapia chimiothérapie chemotherapie chemioterapia hepatite epatite
hépatite anorexie anoressia bulimie boulimie infarto infarctus herzinfarkt ictus demenz démence demencia demenza
autismo autisme autismus sertralina fluoxetina olanzapina litio lítio diálisis dialyse dialisi diálise
""".split()  # noqa: SIM905
]
# acronyms that are ordinary words when lowercased ("meal prep", "ocd" in a URL): only as written here
_CASED = {"prep": ("PrEP", "PREP"), "ocd": ("OCD",), "pcos": ("PCOS",), "hpv": ("HPV",)}
_CONDITION_WORDS += list(_CASED)
register_cues("condition", _CONDITION_WORDS, right_boundary=True)
_CTX = re.compile(
    r"\b(?:patient|diagnos\w*|prescri\w*|symptoms?|treatment|treated|medical|doctor|dr\.|physician|nurse|"
    r"clinic|hospital|\d+\s?mg|dosage|dose|admitted|discharged?|history of|suffers?|suffering|therapy|"
    r"my|his|her|their|he|she|i have|i've|i was|he was|she was|taking|takes|on medication|medication|"
    r"appointment|referral|oncolog\w*|cardiolog\w*|psychiatr\w*|gp\b|er visit|icd-?10|health record|"
    r"sick leave|condition|tested positive|results?|i'm on|i am on|i'm taking|i am taking|been on|put me on|"
    # es / fr / de / it / pt: first-person and family statements, clinical words
    r"tengo|tiene|padezco|padece|sufro|sufre|estoy|soy|tomo|toma|mi (?:madre|padre|hijo|hija|hermano|hermana)|"
    r"je suis|j'ai|il a|elle a|je prends|il prend|elle prend|ma (?:mère|fille|sœur|soeur)|mon (?:père|fils|frère)|"
    r"ich habe|ich bin|ich leide|leidet|ich nehme|nimmt|mein(?:e)? (?:vater|mutter|sohn|tochter|bruder|schwester)|"
    r"hat|ho (?:il|la|l'|lo|un|una|uno)|soffro|soffre|sono|prendo|prende|mi[ao] (?:madre|padre|figlio|figlia)|"
    r"tenho|tem|estou|sou|minha|meu|"
    r"paciente|paziente|patientin|diagnostic\w*|diagnóstic\w*|diagnos\w*|tratamiento|traitement|behandlung|"
    r"trattamento|tratamento|médico|médica|médecin|arzt|ärztin|medico|hôpital|krankenhaus|ospedale|clínica|klinik|"
    r"clinica|receta|ordonnance|rezept|ricetta|depuis|desde|seit)\b"
)
_ICD10 = re.compile(r"icd-?10(?:-cm)?\s{0,8}(?:code\s{0,8})?(?:[:#]\s{0,8})?([a-tv-z]\d{2}(?:\.\d{1,4})?)\b")


def detect_health(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    for c_start, c_end in doc.cues("mrn"):
        if c_start > 0 and lower[c_start - 1].isalnum():
            continue
        m = _MRN_TAIL.match(text, c_end)
        if m is not None:
            yield Finding("medical_record_number", m.start(1), m.end(1), 0.9, m.group(1), 2)
    if "icd" in lower:
        for m in _ICD10.finditer(lower):
            yield Finding("health_info", m.start(1), m.end(1), 0.85, text[m.start(1) : m.end(1)], 1)
    cues = [
        (s, e)
        for s, e in doc.cues("condition")
        if before_ok(lower, s, "-")
        and lower[e : e + 1] != "-"
        # words that are conditions only as written (PrEP, OCD): other spellings are ordinary words
        and not (lower[s:e] in _CASED and text[s:e] not in _CASED[lower[s:e]])
    ]
    if not cues:
        return
    ctx = _context_hits(lower, [(max(0, s - _WINDOW), e + _WINDOW) for s, e in cues])
    starts = [s for s, _ in ctx]
    for c_start, c_end in cues:
        lo, hi = max(0, c_start - _WINDOW), min(len(lower), c_end + _WINDOW)
        i, j = bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)
        hits = sum(1 for s, e in ctx[i:j] if e <= hi and not s <= c_start < e)
        if hits:
            yield Finding("health_info", c_start, c_end, 0.85 if hits > 1 else 0.7, text[c_start:c_end], 1)


_WINDOW = 80


def _context_hits(lower: str, windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans of the clinical/personal context words inside the windows around the condition words.

    Overlapping windows are merged and each merged range is searched once: a text dense with condition words
    ("hiv hiv hiv ...") would otherwise search the same characters once per word (issue 19).
    """
    merged: list[list[int]] = []
    for lo, hi in windows:  # sorted by lo: the cues come in text order
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    hits: list[tuple[int, int]] = []
    for lo, hi in merged:
        hits.extend((m.start(), m.end()) for m in _CTX.finditer(lower, lo, hi))
    return hits
