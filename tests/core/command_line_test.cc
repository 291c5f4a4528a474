// The command line as absl wants it (core/command_line.h): dashes become underscores in flag names (not in values),
// --no-name becomes absl's --noname, and repeated flags come out in order.
#include "core/command_line.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ixc {
namespace {

TEST(CommandLineTest, DashesNegationsAndRepeatedFlags) {
  std::vector<std::string> args = {"prog", "--max-new-tokens=4", "--model", "my-model", "--no-enable-prefix-caching",
                                   "--noenable_prefix_caching", "--enable-prefix-caching=false", "--image", "a.jpg",
                                   "--image=b.jpg"};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  CommandLine line(static_cast<int>(argv.size()), argv.data(), {"image"});
  EXPECT_EQ(std::vector<std::string>(line.argv(), line.argv() + line.argc()),
            (std::vector<std::string>{"prog", "--max_new_tokens=4", "--model", "my-model", "--noenable_prefix_caching",
                                      "--noenable_prefix_caching", "--enable_prefix_caching=false"}));
  EXPECT_EQ(line.Repeated("image"), (std::vector<std::string>{"a.jpg", "b.jpg"}));
  // Which flags the user gave (a preset's value stands for the others).
  EXPECT_TRUE(line.Given("max_new_tokens"));
  EXPECT_TRUE(line.Given("model"));
  EXPECT_TRUE(line.Given("enable_prefix_caching"));
  EXPECT_TRUE(line.Given("image"));
  EXPECT_FALSE(line.Given("temperature"));
  EXPECT_FALSE(line.Given("my-model")) << "values are not flags";
}

}  // namespace
}  // namespace ixc
