// Where media may come from: data: URLs, and local files only under the allowed roots once links and `..` are
// resolved, regular files only, within the size limit; http(s) never.
#include "coordinator/api/media_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace ixc::coordinator {
namespace {

namespace fs = std::filesystem;

class MediaSourceTest : public testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() / ("ixc-media-" + std::to_string(getpid()));
    fs::create_directories(base_ / "allowed" / "sub");
    fs::create_directories(base_ / "outside");
    std::ofstream(base_ / "allowed" / "sub" / "a.jpg") << "JPEGBYTES";
    std::ofstream(base_ / "outside" / "secret.jpg") << "SECRET";
    fs::create_symlink(base_ / "outside" / "secret.jpg", base_ / "allowed" / "escape.jpg");
    fs::create_symlink(base_ / "allowed" / "sub" / "a.jpg", base_ / "allowed" / "inside.jpg");
    mkfifo((base_ / "allowed" / "pipe.jpg").c_str(), 0600);
    auto roots = CanonicalRoots({(base_ / "allowed").string()});
    ASSERT_TRUE(roots.ok()) << roots.status();
    policy_.allowed_roots = *roots;
    policy_.max_bytes = 100;
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string Error(const std::string& url) {
    auto media = ReadMedia(url, false, "image 1", policy_);
    EXPECT_FALSE(media.ok()) << url;
    return media.ok() ? "" : std::string(media.status().message());
  }

  fs::path base_;
  MediaPolicy policy_;
};

TEST_F(MediaSourceTest, AllowedFilesAndDataUrls) {
  auto file = ReadMedia((base_ / "allowed" / "sub" / "a.jpg").string(), false, "image 1", policy_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(std::string(file->bytes.begin(), file->bytes.end()), "JPEGBYTES");
  EXPECT_TRUE(ReadMedia("file://" + (base_ / "allowed" / "sub" / "a.jpg").string(), false, "i", policy_).ok());
  EXPECT_TRUE(ReadMedia((base_ / "allowed" / "inside.jpg").string(), false, "i", policy_).ok());  // a link inside
  auto data = ReadMedia("data:image/png;base64,aGVsbG8=", true, "video 2", policy_);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(std::string(data->bytes.begin(), data->bytes.end()), "hello");
  EXPECT_TRUE(data->video);
}

TEST_F(MediaSourceTest, RefusesEscapesAndOddFiles) {
  EXPECT_NE(Error((base_ / "allowed" / "escape.jpg").string()).find("outside the allowed"), std::string::npos);
  EXPECT_NE(Error((base_ / "allowed" / ".." / "outside" / "secret.jpg").string()).find("outside the allowed"),
            std::string::npos);
  EXPECT_NE(Error((base_ / "allowed" / "pipe.jpg").string()).find("not a regular file"), std::string::npos);
  EXPECT_NE(Error((base_ / "allowed" / "sub").string()).find("not a regular file"), std::string::npos);
  EXPECT_NE(Error((base_ / "allowed" / "none.jpg").string()).find("does not exist"), std::string::npos);
  EXPECT_NE(Error("relative/a.jpg").find("not an absolute path"), std::string::npos);
  EXPECT_NE(Error("https://example.com/a.jpg").find("not fetched"), std::string::npos);
  EXPECT_NE(Error("s3://bucket/a.jpg").find("only data: URLs"), std::string::npos);
  EXPECT_NE(Error("data:image/png;base64,@@@").find("not valid base64"), std::string::npos);
  EXPECT_NE(Error("data:image/png,hello").find("must be base64"), std::string::npos);
  EXPECT_NE(Error("data:image/png;base64," + std::string(200, 'A')).find("more than the limit"), std::string::npos);
  std::ofstream(base_ / "allowed" / "big.jpg") << std::string(101, 'x');
  EXPECT_NE(Error((base_ / "allowed" / "big.jpg").string()).find("more than the limit"), std::string::npos);
  MediaPolicy none;
  EXPECT_FALSE(ReadMedia((base_ / "allowed" / "sub" / "a.jpg").string(), false, "i", none).ok());
  EXPECT_FALSE(CanonicalRoots({(base_ / "nope").string()}).ok());
}

}  // namespace
}  // namespace ixc::coordinator
