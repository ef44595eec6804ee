"""The languages famlib knows: English name (used in prompts), script, FLORES-200 code and FLORES+ configuration.

Codes are the paper's (ISO 639-1 where one exists: ``fil`` for Filipino/Tagalog, ``no`` for Norwegian
Bokmål). Two benchmark codes per language:

* ``flores200``: the FLORES-200 code (ISO 639-3 + script), which Belebele and Global-PIQA reuse and so names
  lm-eval's ``belebele_<code>`` and ``global_piqa_nonparallel_cloze_<code in lower case>``; for a language
  FLORES-200 lacks (Western Frisian) it is the code of the same form, naming tasks that do not exist.
* ``flores``: the FLORES+ configuration the paper scale's translation tasks read, which is not always the
  FLORES-200 code (Filipino: ``fil_Latn`` in FLORES+, ``tgl_Latn`` in FLORES-200 and Belebele), and ``None``
  where FLORES+ has no such language (Western Frisian).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# The FLORES+ configurations (openlanguagedata/flores_plus: one per language, splits dev and devtest) of the
# languages in the table below. Source: FLORES+'s changelog (github.com/openlanguagedata/flores, CHANGELOG.md):
# release 1.0 is FLORES-200 itself; 2.0 (rc.1, 2024-02-29) "Relabeled `tgl_Latn` to `fil_Latn` after confirming
# the data is in Filipino"; its other relabellings (est, grn, kon, zho, tzm, aka/twi, ajp/apc) touch none of
# these languages. Western Frisian (fy, fry_Latn) is in neither FLORES-200 nor FLORES+; the authors' FLORES
# jobs (scaling-multilingual-experts, scripts/flores_jobs.py) leave it out too.
FLORES_PLUS_RELABELLED = {"tgl_Latn": "fil_Latn"}
FLORES_PLUS_CONFIGS = (
    "eng_Latn",
    "afr_Latn", "ltz_Latn", "dan_Latn", "nld_Latn", "deu_Latn", "isl_Latn", "nob_Latn", "swe_Latn",
    "mkd_Cyrl", "hrv_Latn", "rus_Cyrl", "slk_Latn", "srp_Cyrl", "ukr_Cyrl",
    "bul_Cyrl", "ces_Latn", "lit_Latn", "pol_Latn", "slv_Latn", "lvs_Latn",
    "ben_Beng", "hin_Deva", "kan_Knda", "mal_Mlym", "mar_Deva", "npi_Deva", "tam_Taml", "tel_Telu",
    "asm_Beng", "guj_Gujr", "ory_Orya", "pan_Guru", "snd_Arab", "sin_Sinh", "urd_Arab",
    "smo_Latn", "jav_Latn", "ceb_Latn", "fil_Latn", "ind_Latn", "zsm_Latn",
    "ilo_Latn", "mri_Latn", "sun_Latn", "war_Latn", "plt_Latn",
    "spa_Latn", "por_Latn", "fra_Latn", "glg_Latn", "ita_Latn", "ron_Latn", "cat_Latn",
)


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # English name, as it appears in translation prompts ("English: ...\nPolish:")
    flores200: str  # FLORES-200 / Belebele code, e.g. "pol_Latn"

    @property
    def script(self) -> str:
        return self.flores200.split("_", 1)[1]

    @property
    def flores(self) -> Optional[str]:
        """The FLORES+ configuration name (``"fil_Latn"`` for Filipino), or None where FLORES+ has none."""
        name = FLORES_PLUS_RELABELLED.get(self.flores200, self.flores200)
        return name if name in FLORES_PLUS_CONFIGS else None


_TABLE = """
en English eng_Latn
af Afrikaans afr_Latn
fy Western_Frisian fry_Latn
lb Luxembourgish ltz_Latn
da Danish dan_Latn
nl Dutch nld_Latn
de German deu_Latn
is Icelandic isl_Latn
no Norwegian nob_Latn
sv Swedish swe_Latn
mk Macedonian mkd_Cyrl
hr Croatian hrv_Latn
ru Russian rus_Cyrl
sk Slovak slk_Latn
sr Serbian srp_Cyrl
uk Ukrainian ukr_Cyrl
bg Bulgarian bul_Cyrl
cs Czech ces_Latn
lt Lithuanian lit_Latn
pl Polish pol_Latn
sl Slovenian slv_Latn
lv Latvian lvs_Latn
bn Bengali ben_Beng
hi Hindi hin_Deva
kn Kannada kan_Knda
ml Malayalam mal_Mlym
mr Marathi mar_Deva
ne Nepali npi_Deva
ta Tamil tam_Taml
te Telugu tel_Telu
as Assamese asm_Beng
gu Gujarati guj_Gujr
or Odia ory_Orya
pa Punjabi pan_Guru
sd Sindhi snd_Arab
si Sinhala sin_Sinh
ur Urdu urd_Arab
sm Samoan smo_Latn
jv Javanese jav_Latn
ceb Cebuano ceb_Latn
fil Filipino tgl_Latn
id Indonesian ind_Latn
ms Malay zsm_Latn
ilo Ilocano ilo_Latn
mi Maori mri_Latn
su Sundanese sun_Latn
war Waray war_Latn
mg Malagasy plt_Latn
es Spanish spa_Latn
pt Portuguese por_Latn
fr French fra_Latn
gl Galician glg_Latn
it Italian ita_Latn
ro Romanian ron_Latn
ca Catalan cat_Latn
"""

LANGUAGES: dict[str, Language] = {}
for _line in _TABLE.strip().splitlines():
    _code, _name, _flores = _line.split()
    LANGUAGES[_code] = Language(_code, _name.replace("_", " "), _flores)


def language(code: str) -> Language:
    """Look up a language by code; raises KeyError listing the known codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        from famlib.errors import near

        raise KeyError(f"unknown language code {code!r}. {near(code, LANGUAGES)} Known: {', '.join(LANGUAGES)}") from None
