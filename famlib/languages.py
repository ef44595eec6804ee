"""The languages famlib knows: English name (used in prompts), script and FLORES-200 code.

Codes are the paper's (ISO 639-1 where one exists: ``fil`` for Filipino/Tagalog, ``no`` for Norwegian
Bokmål). The FLORES-200 code doubles as the Belebele code and names the paper-scale lm-eval tasks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # English name, as it appears in translation prompts ("English: ...\nPolish:")
    flores: str  # FLORES-200 / Belebele code, e.g. "pol_Latn"

    @property
    def script(self) -> str:
        return self.flores.split("_", 1)[1]


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
