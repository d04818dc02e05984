/* What chat.c needs from chat_template.c. Nothing outside src/text/chat*.c includes this. */
#ifndef Q3_CHAT_INTERNAL_H
#define Q3_CHAT_INTERNAL_H

#include "text/chat.h"
#include "text/jinja.h"

/* The template to render: tool_use when there are tools and it exists, else the default one.
 * Fails with the compile error of a template that did not compile. */
q3_status chat_template_pick(const q3_chat_template *t, bool with_tools, const q3_jinja **out, q3_error *e);
/* The variables every render of t sees (an object; never NULL). */
const json_t *chat_template_vars(const q3_chat_template *t);

#endif
