// SPDX-License-Identifier: MIT
// The log's escaping of client-chosen text: nothing in a message can end its line, forge a
// journald priority prefix or reach a terminal as a control sequence.
#include "log.h"

#include <gtest/gtest.h>

namespace rjitd::log {
namespace {

TEST(EscapeControls, LeavesPrintableTextAlone) {
  EXPECT_EQ(escapeControls("compiled 'sieve.ll' for x86_64 -O2 in 12 ms"),
            "compiled 'sieve.ll' for x86_64 -O2 in 12 ms");
  EXPECT_EQ(escapeControls(""), "");
}

TEST(EscapeControls, LineEndsCannotStartANewLine) {
  EXPECT_EQ(escapeControls("x.ll\n<3>rjitd: fake error"), "x.ll\\n<3>rjitd: fake error");
  EXPECT_EQ(escapeControls("a\rb\tc"), "a\\rb\\tc");
}

TEST(EscapeControls, ControlCharactersBecomeHex) {
  EXPECT_EQ(escapeControls("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(escapeControls(std::string_view("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escapeControls("\x07\x7f"), "\\x07\\x7f");
  // C1 controls: U+009B (CSI) and U+0085 (NEL) in UTF-8.
  EXPECT_EQ(escapeControls("\xc2\x9b"
                           "31m"),
            "\\xc2\\x9b31m");
  EXPECT_EQ(escapeControls("\xc2\x85"), "\\xc2\\x85");
}

TEST(EscapeControls, BackslashIsEscapedSoEscapesAreUnambiguous) {
  EXPECT_EQ(escapeControls("C:\\n"), "C:\\\\n");
}

TEST(EscapeControls, ValidUtf8IsKept) {
  EXPECT_EQ(escapeControls("modul\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80 \xc2\xa0"),
            "modul\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80 \xc2\xa0");
}

TEST(EscapeControls, InvalidUtf8BecomesHex) {
  EXPECT_EQ(escapeControls("\xff"), "\\xff");
  EXPECT_EQ(escapeControls("a\xc3"), "a\\xc3");                           // truncated sequence
  EXPECT_EQ(escapeControls("\xc0\x8a"), "\\xc0\\x8a");                    // overlong newline
  EXPECT_EQ(escapeControls("\xe0\x80\x8a"), "\\xe0\\x80\\x8a");           // overlong, 3 bytes
  EXPECT_EQ(escapeControls("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
  EXPECT_EQ(escapeControls("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
  EXPECT_EQ(escapeControls("\x80x"), "\\x80x");  // a lone continuation byte
}

}  // namespace
}  // namespace rjitd::log
