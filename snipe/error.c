/* error.c — the error table's messages and names (the table itself is in snipe.h). */
#include "snipe.h"

const char *snipe_strerror(int code)
{
	switch (code) {
#define SNIPE_ERR_MSG_(name, value, msg) \
	case SNIPE_##name:               \
		return msg;
		SNIPE_ERRORS(SNIPE_ERR_MSG_)
#undef SNIPE_ERR_MSG_
	}
	return "unknown error";
}

const char *snipe_errname(int code)
{
	switch (code) {
#define SNIPE_ERR_NAME_(name, value, msg) \
	case SNIPE_##name:                \
		return #name;
		SNIPE_ERRORS(SNIPE_ERR_NAME_)
#undef SNIPE_ERR_NAME_
	}
	return "UNKNOWN";
}
