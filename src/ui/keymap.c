#include "ui/keymap.h"

#include <linux/input-event-codes.h>
#include <stddef.h>

/* ---- QEMU key numbers ---- */

/*
 * Set 1 make codes 0x01-0x53 are the evdev codes 1-83 themselves (evdev
 * numbering started from set 1); the rest is listed.
 */
static const struct {
	uint8_t qnum;
	uint16_t evdev;
} qnum_keys[] = {
	{ 0x54, KEY_SYSRQ },	       { 0x55, KEY_F16 },	       { 0x56, KEY_102ND },
	{ 0x57, KEY_F11 },	       { 0x58, KEY_F12 },	       { 0x59, KEY_KPEQUAL },
	{ 0x5a, KEY_F20 },	       { 0x5b, KEY_LINEFEED },	       { 0x5c, KEY_KPJPCOMMA },
	{ 0x5d, KEY_F13 },	       { 0x5e, KEY_F14 },	       { 0x5f, KEY_F15 },
	{ 0x65, KEY_PASTE },	       { 0x6d, KEY_F23 },	       { 0x6f, KEY_F24 },
	{ 0x70, KEY_KATAKANAHIRAGANA }, { 0x73, KEY_RO },	       { 0x74, KEY_F21 },
	{ 0x76, KEY_ZENKAKUHANKAKU },  { 0x77, KEY_HIRAGANA },	       { 0x78, KEY_KATAKANA },
	{ 0x79, KEY_HENKAN },	       { 0x7b, KEY_MUHENKAN },	       { 0x7d, KEY_YEN },
	{ 0x7e, KEY_KPCOMMA },	       { 0x81, KEY_CONFIG },	       { 0x82, KEY_WWW },
	{ 0x83, KEY_F17 },	       { 0x84, KEY_F19 },	       { 0x85, KEY_AGAIN },
	{ 0x86, KEY_PROPS },	       { 0x87, KEY_UNDO },	       { 0x8a, KEY_REDO },
	{ 0x8d, KEY_HANJA },	       { 0x90, KEY_PREVIOUSSONG },     { 0x92, KEY_SCREENLOCK },
	{ 0x98, KEY_REWIND },	       { 0x99, KEY_NEXTSONG },	       { 0x9c, KEY_KPENTER },
	{ 0x9d, KEY_RIGHTCTRL },       { 0x9e, KEY_MENU },	       { 0xa0, KEY_MUTE },
	{ 0xa1, KEY_CALC },	       { 0xa2, KEY_PLAYPAUSE },	       { 0xa3, KEY_CLOSECD },
	{ 0xa4, KEY_STOPCD },	       { 0xa5, KEY_SUSPEND },	       { 0xa8, KEY_PLAYCD },
	{ 0xa9, KEY_PAUSECD },	       { 0xae, KEY_VOLUMEDOWN },       { 0xb0, KEY_VOLUMEUP },
	{ 0xb1, KEY_RECORD },	       { 0xb2, KEY_HOMEPAGE },	       { 0xb3, KEY_PLAY },
	{ 0xb4, KEY_FASTFORWARD },     { 0xb5, KEY_KPSLASH },	       { 0xb7, KEY_SYSRQ },
	{ 0xb8, KEY_RIGHTALT },	       { 0xb9, KEY_PRINT },	       { 0xbc, KEY_CUT },
	{ 0xbf, KEY_EMAIL },	       { 0xc1, KEY_FIND },	       { 0xc6, KEY_PAUSE },
	{ 0xc7, KEY_HOME },	       { 0xc8, KEY_UP },	       { 0xc9, KEY_PAGEUP },
	{ 0xca, KEY_CANCEL },	       { 0xcb, KEY_LEFT },	       { 0xcc, KEY_BRIGHTNESSDOWN },
	{ 0xcd, KEY_RIGHT },	       { 0xcf, KEY_END },	       { 0xd0, KEY_DOWN },
	{ 0xd1, KEY_PAGEDOWN },	       { 0xd2, KEY_INSERT },	       { 0xd3, KEY_DELETE },
	{ 0xd4, KEY_BRIGHTNESSUP },    { 0xd5, KEY_SAVE },	       { 0xdb, KEY_LEFTMETA },
	{ 0xdc, KEY_RIGHTMETA },       { 0xdd, KEY_COMPOSE },	       { 0xde, KEY_POWER },
	{ 0xdf, KEY_SLEEP },	       { 0xe3, KEY_WAKEUP },	       { 0xe5, KEY_SEARCH },
	{ 0xe6, KEY_BOOKMARKS },       { 0xe7, KEY_REFRESH },	       { 0xe8, KEY_STOP },
	{ 0xe9, KEY_FORWARD },	       { 0xea, KEY_BACK },	       { 0xeb, KEY_COMPUTER },
	{ 0xec, KEY_MAIL },	       { 0xed, KEY_MEDIA },	       { 0xf5, KEY_HELP },
	{ 0xf7, KEY_F18 },	       { 0xf8, KEY_COPY },	       { 0xf9, KEY_F22 },
};

unsigned keymap_qnum_to_evdev(uint32_t qnum)
{
	if (qnum >= 0x01 && qnum <= 0x53)
		return qnum;
	for (size_t i = 0; i < sizeof(qnum_keys) / sizeof(qnum_keys[0]); i++)
		if (qnum_keys[i].qnum == qnum)
			return qnum_keys[i].evdev;
	return 0;
}

/* ---- X11 keysyms ---- */

/* Printable ASCII (keysyms 0x20-0x7E are the characters), US layout; letters are handled apart. */
static const struct {
	char c;
	uint8_t evdev;
	bool shift;
} ascii_keys[] = {
	{ ' ', KEY_SPACE, false },	  { '!', KEY_1, true },		   { '"', KEY_APOSTROPHE, true },
	{ '#', KEY_3, true },		  { '$', KEY_4, true },		   { '%', KEY_5, true },
	{ '&', KEY_7, true },		  { '\'', KEY_APOSTROPHE, false }, { '(', KEY_9, true },
	{ ')', KEY_0, true },		  { '*', KEY_8, true },		   { '+', KEY_EQUAL, true },
	{ ',', KEY_COMMA, false },	  { '-', KEY_MINUS, false },	   { '.', KEY_DOT, false },
	{ '/', KEY_SLASH, false },	  { '0', KEY_0, false },	   { '1', KEY_1, false },
	{ '2', KEY_2, false },		  { '3', KEY_3, false },	   { '4', KEY_4, false },
	{ '5', KEY_5, false },		  { '6', KEY_6, false },	   { '7', KEY_7, false },
	{ '8', KEY_8, false },		  { '9', KEY_9, false },	   { ':', KEY_SEMICOLON, true },
	{ ';', KEY_SEMICOLON, false },	  { '<', KEY_COMMA, true },	   { '=', KEY_EQUAL, false },
	{ '>', KEY_DOT, true },		  { '?', KEY_SLASH, true },	   { '@', KEY_2, true },
	{ '[', KEY_LEFTBRACE, false },	  { '\\', KEY_BACKSLASH, false },  { ']', KEY_RIGHTBRACE, false },
	{ '^', KEY_6, true },		  { '_', KEY_MINUS, true },	   { '`', KEY_GRAVE, false },
	{ '{', KEY_LEFTBRACE, true },	  { '|', KEY_BACKSLASH, true },	   { '}', KEY_RIGHTBRACE, true },
	{ '~', KEY_GRAVE, true },
};

/* Letters a-z in alphabet order: evdev codes follow the QWERTY rows, not the alphabet. */
static const uint8_t letter_keys[26] = {
	KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_F, KEY_G, KEY_H, KEY_I, KEY_J, KEY_K, KEY_L, KEY_M,
	KEY_N, KEY_O, KEY_P, KEY_Q, KEY_R, KEY_S, KEY_T, KEY_U, KEY_V, KEY_W, KEY_X, KEY_Y, KEY_Z,
};

/* Function, editing, keypad and modifier keysyms (0xFExx/0xFFxx) and XF86 keysyms (0x1008FFxx). */
static const struct {
	uint32_t keysym;
	uint16_t evdev;
} special_keys[] = {
	{ 0xFF08, KEY_BACKSPACE },   { 0xFF09, KEY_TAB },	 { 0xFF0D, KEY_ENTER },
	{ 0xFF13, KEY_PAUSE },	     { 0xFF14, KEY_SCROLLLOCK }, { 0xFF15, KEY_SYSRQ },
	{ 0xFF1B, KEY_ESC },	     { 0xFF50, KEY_HOME },	 { 0xFF51, KEY_LEFT },
	{ 0xFF52, KEY_UP },	     { 0xFF53, KEY_RIGHT },	 { 0xFF54, KEY_DOWN },
	{ 0xFF55, KEY_PAGEUP },	     { 0xFF56, KEY_PAGEDOWN },	 { 0xFF57, KEY_END },
	{ 0xFF61, KEY_SYSRQ },	     { 0xFF63, KEY_INSERT },	 { 0xFF67, KEY_COMPOSE },
	{ 0xFF6B, KEY_PAUSE },	     { 0xFF7F, KEY_NUMLOCK },	 { 0xFF8D, KEY_KPENTER },
	{ 0xFF95, KEY_KP7 },	     { 0xFF96, KEY_KP4 },	 { 0xFF97, KEY_KP8 },
	{ 0xFF98, KEY_KP6 },	     { 0xFF99, KEY_KP2 },	 { 0xFF9A, KEY_KP9 },
	{ 0xFF9B, KEY_KP3 },	     { 0xFF9C, KEY_KP1 },	 { 0xFF9D, KEY_KP5 },
	{ 0xFF9E, KEY_KP0 },	     { 0xFF9F, KEY_KPDOT },	 { 0xFFAA, KEY_KPASTERISK },
	{ 0xFFAB, KEY_KPPLUS },	     { 0xFFAC, KEY_KPCOMMA },	 { 0xFFAD, KEY_KPMINUS },
	{ 0xFFAE, KEY_KPDOT },	     { 0xFFAF, KEY_KPSLASH },	 { 0xFFBD, KEY_KPEQUAL },
	{ 0xFFE1, KEY_LEFTSHIFT },   { 0xFFE2, KEY_RIGHTSHIFT }, { 0xFFE3, KEY_LEFTCTRL },
	{ 0xFFE4, KEY_RIGHTCTRL },   { 0xFFE5, KEY_CAPSLOCK },	 { 0xFFE7, KEY_LEFTMETA },
	{ 0xFFE8, KEY_RIGHTMETA },   { 0xFFE9, KEY_LEFTALT },	 { 0xFFEA, KEY_RIGHTALT },
	{ 0xFFEB, KEY_LEFTMETA },    { 0xFFEC, KEY_RIGHTMETA },	 { 0xFFFF, KEY_DELETE },
	{ 0xFE03, KEY_RIGHTALT },    /* ISO_Level3_Shift (AltGr) */
	{ 0x1008FF02, KEY_BRIGHTNESSUP }, { 0x1008FF03, KEY_BRIGHTNESSDOWN },
	{ 0x1008FF11, KEY_VOLUMEDOWN },	  { 0x1008FF12, KEY_MUTE },
	{ 0x1008FF13, KEY_VOLUMEUP },	  { 0x1008FF14, KEY_PLAYPAUSE },
	{ 0x1008FF15, KEY_STOPCD },	  { 0x1008FF16, KEY_PREVIOUSSONG },
	{ 0x1008FF17, KEY_NEXTSONG },	  { 0x1008FF18, KEY_HOMEPAGE },
	{ 0x1008FF19, KEY_MAIL },	  { 0x1008FF1B, KEY_SEARCH },
	{ 0x1008FF1C, KEY_RECORD },	  { 0x1008FF1D, KEY_CALC },
	{ 0x1008FF26, KEY_BACK },	  { 0x1008FF27, KEY_FORWARD },
	{ 0x1008FF28, KEY_STOP },	  { 0x1008FF29, KEY_REFRESH },
	{ 0x1008FF2A, KEY_POWER },	  { 0x1008FF2B, KEY_WAKEUP },
	{ 0x1008FF2C, KEY_EJECTCD },	  { 0x1008FF2E, KEY_WWW },
	{ 0x1008FF2F, KEY_SLEEP },	  { 0x1008FF30, KEY_BOOKMARKS },
	{ 0x1008FF31, KEY_PAUSECD },	  { 0x1008FF32, KEY_MEDIA },
	{ 0x1008FF33, KEY_COMPUTER },	  { 0x1008FF3E, KEY_REWIND },
	{ 0x1008FF57, KEY_COPY },	  { 0x1008FF58, KEY_CUT },
	{ 0x1008FF6D, KEY_PASTE },	  { 0x1008FF97, KEY_FASTFORWARD },
	{ 0x1008FFA7, KEY_SUSPEND },
};

/* Function keys and keypad digits: keysym ranges. */
static unsigned function_key(uint32_t keysym)
{
	static const uint16_t f[24] = {
		KEY_F1,	 KEY_F2,  KEY_F3,  KEY_F4,  KEY_F5,  KEY_F6,  KEY_F7,  KEY_F8,
		KEY_F9,	 KEY_F10, KEY_F11, KEY_F12, KEY_F13, KEY_F14, KEY_F15, KEY_F16,
		KEY_F17, KEY_F18, KEY_F19, KEY_F20, KEY_F21, KEY_F22, KEY_F23, KEY_F24,
	};

	static const uint16_t kp[10] = {
		KEY_KP0, KEY_KP1, KEY_KP2, KEY_KP3, KEY_KP4, KEY_KP5, KEY_KP6, KEY_KP7, KEY_KP8, KEY_KP9,
	};

	if (keysym >= 0xFFB0 && keysym <= 0xFFB9) /* XK_KP_0..XK_KP_9 */
		return kp[keysym - 0xFFB0];
	return keysym >= 0xFFBE && keysym <= 0xFFD5 ? f[keysym - 0xFFBE] : 0; /* XK_F1..XK_F24 */
}

static unsigned ascii_key(uint32_t keysym, bool *shift)
{
	if (keysym >= 'a' && keysym <= 'z')
		return letter_keys[keysym - 'a'];
	if (keysym >= 'A' && keysym <= 'Z') {
		*shift = true;
		return letter_keys[keysym - 'A'];
	}
	for (size_t i = 0; i < sizeof(ascii_keys) / sizeof(ascii_keys[0]); i++)
		if ((uint32_t)(unsigned char)ascii_keys[i].c == keysym) {
			*shift = ascii_keys[i].shift;
			return ascii_keys[i].evdev;
		}
	return 0;
}

unsigned keymap_keysym_to_evdev(uint32_t keysym, bool *needs_shift)
{
	bool shift = false;
	unsigned code;

	if (keysym == 0xFE20) { /* ISO_Left_Tab: Shift+Tab */
		shift = true;
		code = KEY_TAB;
	} else if (keysym >= 0x20 && keysym <= 0x7E) {
		code = ascii_key(keysym, &shift);
	} else if ((code = function_key(keysym)) == 0) {
		for (size_t i = 0; i < sizeof(special_keys) / sizeof(special_keys[0]) && !code; i++)
			if (special_keys[i].keysym == keysym)
				code = special_keys[i].evdev;
	}
	if (needs_shift)
		*needs_shift = code && shift;
	return code;
}
