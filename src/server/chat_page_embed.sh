#!/bin/sh
# Writes chat_page.h from chat_page.html: the page as one C string literal, so the binary serves
# it with no file beside it and no build step. Run it after editing the HTML;
# tests/test_chat_page.sh fails when the two disagree.
#   sh src/server/chat_page_embed.sh [OUT]    (OUT defaults to src/server/chat_page.h)
set -eu
dir=$(dirname "$0")
out=${1:-$dir/chat_page.h}
{
  echo "/* The chat page served at GET /, generated from chat_page.html by chat_page_embed.sh:"
  echo " * edit the HTML and run the script, not this file. */"
  echo "#ifndef Q3_SERVER_CHAT_PAGE_H"
  echo "#define Q3_SERVER_CHAT_PAGE_H"
  echo ""
  echo "static const char Q3_CHAT_PAGE[] ="
  # Backslashes and quotes are escaped, and so is '?', so that no "??x" trigraph forms in C11.
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/    "/' -e 's/$/\\n"/' "$dir/chat_page.html"
  echo "    ;"
  echo ""
  echo "#endif"
} > "$out"
